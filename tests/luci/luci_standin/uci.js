'use strict';
'require baseclass';
'require rpc';

/* STAND-IN for LuCI's uci class: load() through rpcd's `uci get`, local
 * changes (set, unset, add, remove) until save() sends them as rpcd's
 * `uci add`, `uci set` and `uci delete`, as the real class does. */
var callGet = rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: {} } });
var callAdd = rpc.declare({ object: 'uci', method: 'add', params: [ 'config', 'type', 'name', 'values' ],
                            expect: { section: '' } });
var callSet = rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ] });
var callDelete = rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ] });

return baseclass.extend({
	__init__: function() {
		this.values = {};
		this.created = {};
		this.changed = {};
		this.deleted = {};
	},

	load: function(config) {
		return callGet(config).then(L.bind(function(values) {
			this.values[config] = values;
			return config;
		}, this));
	},

	sections: function(config, type, callback) {
		var values = Object.assign({}, this.values[config] || {}, this.created[config] || {}),
		    deleted = this.deleted[config] || {}, out = [];
		for (var sid in values) {
			if (deleted[sid] === true || (type && values[sid]['.type'] != type))
				continue;
			out.push(this.merged(config, sid));
		}
		out.sort(function(a, b) { return a['.index'] - b['.index'] });
		if (callback)
			out.forEach(function(s) { callback.call(this, s, s['.name']) });
		return out;
	},

	merged: function(config, sid) {
		var base = ((this.created[config] || {})[sid]) || ((this.values[config] || {})[sid]);
		if (!base)
			return null;
		var section = Object.assign({}, base, (this.changed[config] || {})[sid] || {}),
		    gone = (this.deleted[config] || {})[sid] || {};
		for (var option in gone)
			delete section[option];
		return section;
	},

	get: function(config, sid, option) {
		var section = this.merged(config, sid);
		if (!section)
			return null;
		return option == null ? section['.type'] : section[option];
	},

	get_first: function(config, type, option) {
		var first = this.sections(config, type)[0];
		return first ? (option == null ? first : first[option]) : null;
	},

	set: function(config, sid, option, value) {
		if (value == null || value === '' || (Array.isArray(value) && !value.length))
			return this.unset(config, sid, option);
		var changed = (this.changed[config] = this.changed[config] || {});
		(changed[sid] = changed[sid] || {})[option] = value;
		var gone = (this.deleted[config] || {})[sid];
		if (gone && gone !== true)
			delete gone[option];
	},

	/* as uci.js: a deletion is staged only for an option the section has */
	unset: function(config, sid, option) {
		var changed = (this.changed[config] || {})[sid];
		if (changed)
			delete changed[option];
		var base = ((this.created[config] || {})[sid]) || ((this.values[config] || {})[sid]);
		if (!base || !Object.prototype.hasOwnProperty.call(base, option))
			return;
		var deleted = (this.deleted[config] = this.deleted[config] || {});
		if (deleted[sid] !== true)
			(deleted[sid] = deleted[sid] || {})[option] = true;
	},

	add: function(config, type, name) {
		var created = (this.created[config] = this.created[config] || {}),
		    sid = name || ('new' + Math.random().toString(16).slice(2, 8)),
		    count = Object.keys(this.values[config] || {}).length + Object.keys(created).length;
		created[sid] = { '.type': type, '.name': sid, '.anonymous': !name, '.index': count };
		return sid;
	},

	remove: function(config, sid) {
		var created = this.created[config] || {};
		if (created[sid])
			delete created[sid];
		else
			(this.deleted[config] = this.deleted[config] || {})[sid] = true;
	},

	save: function() {
		var tasks = [];
		for (var config in this.created)
			for (var sid in this.created[config]) {
				var section = this.created[config][sid], values = {};
				Object.assign(values, (this.changed[config] || {})[sid] || {});
				tasks.push(callAdd(config, section['.type'], section['.anonymous'] ? null : sid, values));
				delete (this.changed[config] || {})[sid];
			}
		return Promise.all(tasks).then(L.bind(function() {
			var sets = [];
			for (var config in this.changed)
				for (var sid in this.changed[config])
					if (Object.keys(this.changed[config][sid]).length)
						sets.push(callSet(config, sid, this.changed[config][sid]));
			for (var config2 in this.deleted)
				for (var sid2 in this.deleted[config2])
					sets.push(callDelete(config2, sid2, this.deleted[config2][sid2] === true ? null
						: Object.keys(this.deleted[config2][sid2])));
			return Promise.all(sets);
		}, this)).then(L.bind(function() {
			var configs = Object.keys(this.values);
			this.__init__();
			return Promise.all(configs.map(L.bind(this.load, this)));
		}, this));
	}
});
