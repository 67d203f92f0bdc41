/*
 * STAND-IN for LuCI's client runtime (luci-base luci.js + cbi.js), which is
 * not available offline: only the parts luci-app-flowprobe's views use.
 * Globals L, E, _, N_ and String.prototype.format; classes with extend() and
 * super(); L.require() loading modules as LuCI does (the 'require lines
 * become arguments of a function around the source, the returned class is
 * instantiated once); L.dom. Then it loads the page's view
 * (<body data-view="flowprobe/status">).
 */
'use strict';

(function(window, document) {
	function toArray(value) {
		if (value == null)
			return [];
		if (Array.isArray(value))
			return value;
		return String(value).trim().split(/\s+/).filter(function(v) { return v != '' });
	}

	function Class() {}
	Class.extend = function(properties) {
		var parent = this;
		function Subclass() {
			if (typeof(this.__init__) == 'function')
				this.__init__.apply(this, arguments);
		}
		Subclass.prototype = Object.create(parent.prototype);
		Object.assign(Subclass.prototype, properties);
		Subclass.prototype.constructor = Subclass;
		Subclass.extend = Class.extend;
		Subclass.isSubclass = function(other) { return other && other.prototype instanceof Class };
		return Subclass;
	};
	Class.prototype.varargs = function(args, offset) {
		return Array.prototype.slice.call(args, offset || 0);
	};
	/* this.super('load', section_id) or this.super('render', arguments) */
	Class.prototype.super = function(key, callArgs) {
		var depths = this.__superDepth || (this.__superDepth = {}),
		    depth = depths[key] || 0, owners = [];
		for (var p = Object.getPrototypeOf(this); p; p = Object.getPrototypeOf(p))
			if (Object.prototype.hasOwnProperty.call(p, key))
				owners.push(p);
		var target = owners[depth + 1];
		if (!target)
			throw new ReferenceError('super(): no parent implementation of ' + key);
		var args = (arguments.length == 2 && callArgs != null && typeof(callArgs) == 'object' &&
		            typeof(callArgs.length) == 'number') ? callArgs : this.varargs(arguments, 1);
		depths[key] = depth + 1;
		try {
			return target[key].apply(this, args);
		}
		finally {
			depths[key] = depth;
		}
	};

	var dom = {
		elem: function(e) { return e != null && typeof(e) == 'object' && 'nodeType' in e },
		append: function(node, children) {
			if (children == null)
				return;
			if (Array.isArray(children)) {
				children.forEach(function(c) { dom.append(node, c) });
			}
			else if (dom.elem(children)) {
				node.appendChild(children);
			}
			else {
				node.appendChild(document.createTextNode(String(children)));
			}
		},
		content: function(node, children) {
			while (node.firstChild)
				node.removeChild(node.firstChild);
			dom.append(node, children);
			return node;
		},
		attr: function(node, key, value) {
			if (typeof(value) == 'function')
				node.addEventListener(key, value);
			else if (value != null)
				node.setAttribute(key, typeof(value) == 'object' ? JSON.stringify(value) : value);
		},
		create: function(html, attributes, children) {
			var node;
			if (Array.isArray(html)) {
				node = document.createDocumentFragment();
				dom.append(node, html);
				return node;
			}
			node = document.createElement(html);
			if (attributes != null && (typeof(attributes) != 'object' || Array.isArray(attributes) ||
			                           dom.elem(attributes))) {
				children = attributes;
				attributes = null;
			}
			for (var key in (attributes || {}))
				dom.attr(node, key, attributes[key]);
			dom.append(node, children);
			return node;
		},
		bindClassInstance: function(node, instance) { node.__luciInstance = instance },
		findClassInstance: function(node) {
			for (; node; node = node.parentNode)
				if (node.__luciInstance)
					return node.__luciInstance;
			return null;
		},
		callClassMethod: function(node, method) {
			var instance = dom.findClassInstance(node);
			return instance ? instance[method].apply(instance, Array.prototype.slice.call(arguments, 2))
				: undefined;
		}
	};

	/* cbi.js's String.format: the conversions the views use */
	String.prototype.format = function() {
		var args = arguments, index = 0;
		return this.replace(/%(%|(-)?(\d+)?(?:\.(\d+))?([sdfh]))/g,
			function(all, what, left, width, precision, type) {
				if (what == '%')
					return '%';
				var value = args[index++], out;
				if (type == 'd')
					out = String(Math.round(Number(value) || 0));
				else if (type == 'f')
					out = (Number(value) || 0).toFixed(precision != null ? +precision : 6);
				else
					out = (value == null) ? '' : String(value);
				if (type == 'h')
					out = out.replace(/[&<>"']/g, function(c) { return '&#' + c.charCodeAt(0) + ';' });
				return out;
			});
	};

	var classes = { baseclass: Class, dom: dom }, loading = {};

	var L = {
		Class: Class,
		dom: dom,
		env: { sessionid: '00000000000000000000000000000000', resource: '/luci-static/resources' },
		toArray: toArray,
		isObject: function(v) { return v != null && typeof(v) == 'object' },
		bind: function(fn, self) {
			var args = Array.prototype.slice.call(arguments, 2);
			return function() { return fn.apply(self, args.concat(Array.prototype.slice.call(arguments))) };
		},
		resolveDefault: function(promise, fallback) {
			return Promise.resolve(promise).catch(function() { return fallback });
		},
		raise: function(type, message) {
			var error = new Error(message.format.apply(message, Array.prototype.slice.call(arguments, 2)));
			error.name = type;
			throw error;
		},
		resource: function(path) { return L.env.resource + '/' + path },
		url: function(path) { return '/cgi-bin/luci/' + path },
		require: function(name) {
			if (classes[name] && typeof(classes[name]) == 'object')
				return Promise.resolve(classes[name]);
			if (!loading[name])
				loading[name] = fetch(L.resource(name.replace(/\./g, '/') + '.js'))
					.then(function(reply) {
						if (!reply.ok)
							throw new Error('cannot load module ' + name + ': HTTP ' + reply.status);
						return reply.text();
					})
					.then(function(source) { return compile(name, source) });
			return loading[name];
		}
	};

	function compile(name, source) {
		var pattern = /^'require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?';$/gm,
		    names = [], aliases = [], match;
		while ((match = pattern.exec(source)) !== null) {
			names.push(match[1]);
			aliases.push(match[2] || match[1].replace(/.*\./, ''));
		}
		return Promise.all(names.map(function(dep) {
			return dep == 'baseclass' ? Class : L.require(dep);
		})).then(function(deps) {
			var factory = new Function([ 'window', 'document', 'L' ].concat(aliases).join(','),
				source + '\n//# sourceURL=' + L.resource(name.replace(/\./g, '/') + '.js'));
			var Result = factory.apply(null, [ window, document, L ].concat(deps));
			if (typeof(Result) != 'function' || !(Result === Class || Result.prototype instanceof Class))
				throw new TypeError('module ' + name + ' did not return a class');
			/* `view` is the class views extend (luci.js keeps it as a class); every
			 * other module is instantiated once, a view's instance renders the page */
			var instance = (name == 'view') ? Result : new Result();
			classes[name] = instance;
			if (name == 'ui')
				L.ui = instance;
			return instance;
		});
	}

	window.L = L;
	window.E = dom.create;
	window._ = function(text) { return text };
	window.N_ = function(n, singular, plural) { return n == 1 ? singular : plural };

	document.addEventListener('DOMContentLoaded', function() {
		var path = document.body.getAttribute('data-view');
		L.require('ui').then(function() { return L.require('view.' + path.replace(/\//g, '.')) })
			.catch(function(e) {
				dom.content(document.getElementById('view'),
					E('div', { 'class': 'alert-message error', 'id': 'standin-error' }, String(e.stack || e)));
			});
	});
})(window, document);
