'use strict';
'require form';
'require network';

/* STAND-IN for LuCI's tools.widgets: NetworkSelect only, a ListValue over
 * network.getNetworks() (loopback left out), several at once when
 * `multiple`; values that are no network are not offered, as with the real
 * widget's `nocreate`. */
var NetworkSelect = form.ListValue.extend({
	load: function(section_id) {
		return network.getNetworks().then(L.bind(function(networks) {
			this.networks = networks;
			return this.super('load', section_id);
		}, this));
	},

	renderWidget: function(section_id) {
		var values = L.toArray(this.shownValue(section_id)), self = this;
		var names = this.networks.map(function(n) { return n.getName() })
			.filter(function(name) { return name != 'loopback' });
		return E('select', { 'class': 'cbi-input-select', 'multiple': this.multiple ? '' : null,
		                     'size': Math.min(names.length, 6) || 1 }, names.map(function(name) {
			return E('option', { 'value': name, 'selected': values.indexOf(name) >= 0 ? '' : null },
				name + (self.networks.filter(function(n) { return n.getName() == name })[0].isUp() ? '' : ' (down)'));
		}));
	},

	readWidget: function(node) {
		var chosen = Array.prototype.filter.call(node.options, function(o) { return o.selected })
			.map(function(o) { return o.value });
		return this.multiple ? chosen : (chosen[0] || '');
	}
});

return L.Class.extend({
	NetworkSelect: NetworkSelect
});
