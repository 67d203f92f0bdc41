'use strict';
'require baseclass';

/* STAND-IN for LuCI's rpc class: rpc.declare() posting ubus JSON-RPC calls
 * to /ubus as the real one does (same message, same reply handling: an
 * error frame rejects, a non-zero ubus status resolves to the code unless
 * `reject`, `expect` picks and type-checks the reply). */
var requestId = 1;

return baseclass.extend({
	declare: function(options) {
		return function() {
			var args = Array.prototype.slice.call(arguments), params = {};
			(options.params || []).forEach(function(name, i) { params[name] = args[i] });
			var message = { jsonrpc: '2.0', id: requestId++, method: 'call',
			                params: [ L.env.sessionid, options.object, options.method, params ] };
			return fetch('/ubus/' + options.object + '.' + options.method, {
				method: 'POST', headers: { 'Content-Type': 'application/json' },
				body: JSON.stringify(message)
			}).then(function(reply) {
				if (!reply.ok)
					L.raise('RPCError', 'RPC call to %s/%s failed with HTTP error %d: %s',
						options.object, options.method, reply.status, reply.statusText || '?');
				return reply.json();
			}).then(function(msg) {
				if (msg.error && msg.error.code && msg.error.message)
					L.raise('RPCError', 'RPC call to %s/%s failed with error %d: %s',
						options.object, options.method, msg.error.code, msg.error.message);
				var ret = (msg.result.length > 1) ? msg.result[1] : msg.result[0];
				if (options.reject && msg.result[0] !== 0)
					L.raise('RPCError', 'RPC call to %s/%s failed with ubus code %d',
						options.object, options.method, msg.result[0]);
				for (var key in (options.expect || {})) {
					if (ret != null && key != '')
						ret = ret[key];
					var type = Object.prototype.toString;
					if (ret == null || type.call(ret) != type.call(options.expect[key]))
						ret = options.expect[key];
					break;
				}
				return (typeof(options.filter) == 'function') ? options.filter(ret, params) : ret;
			});
		};
	}
});
