'use strict';
'require form';
'require network';

/* STAND-IN for LuCI's tools.widgets: NetworkSelect only, a ListValue over
 * network.getNetworks() (loopback left out), several at once when
 * `multiple`; values that are no network are not offered, as with the real
 * widget's `nocreate`. Its load() fetches the networks, as the real one
 * does, then reads UCI; the control is a plain <select>, not a dropdown. */
var NetworkSelect = form.ListValue.extend({
	load: function(section_id) {
		return network.getNetworks().then(L.bind(function(networks) {
			this.networks = networks;
			return this.super('load', [ section_id ]);
		}, this));
	},

	renderInput: function(section_id, value) {
		var values = L.toArray(value), self = this;
		var names = this.networks.map(function(n) { return n.getName() })
			.filter(function(name) { return name != 'loopback' });
		var select = E('select', { 'class': 'cbi-input-select', 'multiple': this.multiple ? '' : null,
		                           'size': Math.min(names.length, 6) || 1 }, names.map(function(name) {
			return E('option', { 'value': name, 'selected': values.indexOf(name) >= 0 ? '' : null },
				name + (self.networks.filter(function(n) { return n.getName() == name })[0].isUp() ? '' : ' (down)'));
		}));
		return [ select, function(node) {
			var chosen = Array.prototype.filter.call(node.options, function(o) { return o.selected })
				.map(function(o) { return o.value });
			return self.multiple ? chosen : (chosen[0] || '');
		}, function(node, v) {
			v = L.toArray(v);
			Array.prototype.forEach.call(node.options, function(o) { o.selected = v.indexOf(o.value) >= 0 });
		} ];
	}
});

return L.Class.extend({
	NetworkSelect: NetworkSelect
});
