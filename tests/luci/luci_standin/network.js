'use strict';
'require baseclass';

/* STAND-IN for LuCI's network class: getNetworks() only, from the stand-in
 * server's list (on a router: UCI network + netifd's interface dump). */
var Network = L.Class.extend({
	__init__: function(data) { this.data = data },
	getName: function() { return this.data.name },
	getDevice: function() { return null },
	getDevices: function() { return [] },
	isBridge: function() { return false },
	isUp: function() { return !!this.data.up },
	isVirtual: function() { return false }
});

return baseclass.extend({
	getNetworks: function() {
		return fetch('/standin/networks').then(function(r) { return r.json() }).then(function(list) {
			return list.map(function(data) { return new Network(data) });
		});
	}
});
