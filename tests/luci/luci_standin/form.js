'use strict';
'require baseclass';
'require uci';
'require ui';

/*
 * STAND-IN for LuCI's form classes (luci-base form.js), only what
 * luci-app-flowprobe's settings view uses: Map, NamedSection, TableSection
 * (add/remove), tabs, and the options Flag, Value, ListValue, MultiValue,
 * DynamicList, with the real API's semantics where the view relies on them:
 * cfgvalue/formvalue/write/remove overridable, validate(section_id, value)
 * returning true or a message, rmempty, default, placeholder,
 * depends(option, value) / depends({ option: value }) (alternatives OR'ed;
 * an inactive option is hidden, not validated, and removed on save unless
 * retain is set), TableSection's description row (unless nodescriptions),
 * map.lookupOption(), section.formvalue(). Widgets are plain HTML controls.
 */

function isEmpty(value) {
	return value == null || value === '' || (Array.isArray(value) && !value.length);
}

function sameValue(a, b) {
	return JSON.stringify(L.toArray(a)) == JSON.stringify(L.toArray(b));
}

var AbstractValue = L.Class.extend({
	__init__: function(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title || '';
		this.description = description || '';
		this.rmempty = true;
		this.default = null;
		this.choices = null;
		this.keylist = [];
		this.vallist = [];
		this.deps = [];
		this.retain = false;
	},

	/* as form.js: each call one alternative, all of its options must match */
	depends: function(field, value) {
		var dep = field;
		if (typeof(field) == 'string') {
			dep = {};
			dep[field] = value;
		}
		this.deps.push(dep);
	},

	isActive: function(section_id) {
		if (!this.deps.length)
			return true;
		var section = this.section;
		return this.deps.some(function(dep) {
			return Object.keys(dep).every(function(name) {
				var value = section.formvalue(section_id, name);
				return String(value != null ? value : '') == String(dep[name]);
			});
		});
	},

	value: function(key, label) {
		this.keylist.push(String(key));
		this.vallist.push(label != null ? label : String(key));
	},

	load: function(section_id) { return Promise.resolve() },
	cfgvalue: function(section_id) { return uci.get(this.map.config, section_id, this.option) },
	write: function(section_id, value) { uci.set(this.map.config, section_id, this.option, value) },
	remove: function(section_id) { uci.unset(this.map.config, section_id, this.option) },
	validate: function(section_id, value) { return true },
	cbid: function(section_id) { return 'cbid.' + this.map.config + '.' + section_id + '.' + this.option },

	widget: function(section_id) { return document.getElementById(this.cbid(section_id)) },

	formvalue: function(section_id) {
		var node = this.widget(section_id);
		return node ? this.readWidget(node) : this.cfgvalue(section_id);
	},

	readWidget: function(node) { return node.value },

	shownValue: function(section_id) {
		var value = this.cfgvalue(section_id);
		return value != null ? value : this.default;
	},

	/* true, or the validator's message; shown at the field as LuCI marks it */
	check: function(section_id) {
		var active = this.isActive(section_id),
		    result = active ? this.validate(section_id, this.formvalue(section_id)) : true,
		    node = this.widget(section_id), message = (result === true || result == null) ? null
		    	: (typeof(result) == 'string' ? result : _('Invalid value'));
		if (node) {
			/* form.js hides an inactive option's row (a table cell's widget) */
			var row = node.closest('.cbi-value') || node.parentNode;
			row.style.display = active ? '' : 'none';
			row.setAttribute('data-active', active ? '1' : '0');
			node.classList.toggle('cbi-input-invalid', message != null);
			var error = node.parentNode.querySelector('.cbi-value-error');
			if (error)
				L.dom.content(error, message || '');
		}
		return message == null ? true : message;
	},

	renderWidget: function(section_id) {
		return E('input', { 'type': 'text', 'class': 'cbi-input-text', 'value': this.shownValue(section_id),
		                    'placeholder': this.placeholder });
	},

	render: function(section_id) {
		var widget = this.renderWidget(section_id);
		widget.id = this.cbid(section_id);
		widget.setAttribute('data-option', this.option);
		var recheck = L.bind(function() { this.section.map.recheck(section_id) }, this);
		widget.addEventListener('input', recheck);
		widget.addEventListener('change', recheck);
		return E('div', { 'class': 'cbi-value-field' }, [
			widget, E('div', { 'class': 'cbi-value-error' })
		]);
	},

	/* form value to UCI, as form.js's AbstractValue.parse */
	parse: function(section_id) {
		if (!this.isActive(section_id))
			return Promise.resolve(this.retain ? null : this.remove(section_id));
		var valid = this.check(section_id);
		if (valid !== true)
			return Promise.reject(new Error('%s: %s'.format(this.title || this.option, valid)));
		var value = this.formvalue(section_id), old = this.cfgvalue(section_id);
		if (sameValue(value, old != null ? old : (this.default != null ? this.default : null)) &&
		    !(old == null && this.rmempty === false && !isEmpty(value)))
			return Promise.resolve();
		if (isEmpty(value) && this.rmempty !== false)
			return Promise.resolve(this.remove(section_id));
		return Promise.resolve(this.write(section_id, value));
	}
});

var Value = AbstractValue.extend({});

var Flag = AbstractValue.extend({
	__init__: function() {
		this.super('__init__', arguments);
		this.enabled = '1';
		this.disabled = '0';
		this.default = this.disabled;
	},
	renderWidget: function(section_id) {
		var value = this.shownValue(section_id);
		return E('input', { 'type': 'checkbox', 'class': 'cbi-input-checkbox',
		                    'checked': (value == this.enabled) ? '' : null });
	},
	readWidget: function(node) { return node.checked ? this.enabled : this.disabled }
});

var ListValue = AbstractValue.extend({
	renderWidget: function(section_id) {
		var value = this.shownValue(section_id);
		return E('select', { 'class': 'cbi-input-select' }, this.keylist.map(L.bind(function(key, i) {
			return E('option', { 'value': key, 'selected': key == value ? '' : null }, this.vallist[i]);
		}, this)));
	}
});

var MultiValue = AbstractValue.extend({
	renderWidget: function(section_id) {
		var values = L.toArray(this.shownValue(section_id));
		return E('select', { 'class': 'cbi-input-select', 'multiple': '', 'size': this.size || 4,
		                     'title': this.placeholder }, this.keylist.map(L.bind(function(key, i) {
			return E('option', { 'value': key, 'selected': values.indexOf(key) >= 0 ? '' : null },
				this.vallist[i]);
		}, this)));
	},
	readWidget: function(node) {
		return Array.prototype.filter.call(node.options, function(o) { return o.selected })
			.map(function(o) { return o.value });
	}
});

var DynamicList = AbstractValue.extend({
	renderWidget: function(section_id) {
		var list = E('div', { 'class': 'cbi-dynlist' }), self = this;
		function item(value) {
			var node = E('div', { 'class': 'item' }, [
				E('input', { 'type': 'text', 'class': 'cbi-input-text', 'value': value }),
				E('button', { 'class': 'cbi-button', 'type': 'button', 'click': function() {
					list.removeChild(node);
					self.section.map.recheck(section_id);
				} }, '\u00d7')
			]);
			return node;
		}
		L.toArray(this.shownValue(section_id)).forEach(function(v) { list.appendChild(item(v)) });
		var entry = E('input', { 'type': 'text', 'class': 'cbi-input-text add-item',
		                         'placeholder': this.placeholder });
		list.appendChild(E('div', { 'class': 'add' }, [ entry,
			E('button', { 'class': 'cbi-button cbi-button-add', 'type': 'button', 'click': function() {
				if (entry.value.trim() == '')
					return;
				list.insertBefore(item(entry.value.trim()), entry.parentNode);
				entry.value = '';
				self.section.map.recheck(section_id);
			} }, _('Add')) ]));
		return list;
	},
	readWidget: function(node) {
		return Array.prototype.map.call(node.querySelectorAll('.item input'), function(i) {
			return i.value.trim();
		}).filter(function(v) { return v != '' });
	}
});

var AbstractSection = L.Class.extend({
	__init__: function(map, sectiontype, title, description) {
		this.map = map;
		this.sectiontype = sectiontype;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.tabs = null;
	},
	tab: function(name, title) {
		this.tabs = this.tabs || [];
		this.tabs.push({ name: name, title: title });
	},
	option: function(Class, option, title, description) {
		var o = new Class(this.map, this, option, title, description);
		this.children.push(o);
		return o;
	},
	taboption: function(tab, Class, option, title, description) {
		var o = this.option(Class, option, title, description);
		o.tab = tab;
		return o;
	},
	formvalue: function(section_id, option) {
		var o = this.children.filter(function(c) { return c.option == option })[0];
		return o ? o.formvalue(section_id) : null;
	},
	load: function() {
		var ids = this.cfgsections(), tasks = [];
		this.children.forEach(function(o) {
			ids.forEach(function(sid) { tasks.push(o.load(sid)) });
		});
		return Promise.all(tasks);
	},
	parse: function() {
		var tasks = [], self = this;
		this.cfgsections().forEach(function(sid) {
			self.children.forEach(function(o) { tasks.push(o.parse(sid)) });
		});
		return Promise.all(tasks);
	}
});

var NamedSection = AbstractSection.extend({
	__init__: function(map, section, sectiontype, title, description) {
		this.super('__init__', [ map, sectiontype, title, description ]);
		this.section = section;
	},
	cfgsections: function() { return uci.get(this.map.config, this.section) ? [ this.section ] : [] },
	render: function() {
		var sid = this.section, node = E('div', { 'class': 'cbi-section', 'id': 'cbi-' + this.map.config + '-' + sid }, [
			this.title ? E('h3', this.title) : ''
		]);
		if (!this.cfgsections().length)
			return node;
		var groups = this.tabs || [ { name: null, title: null } ];
		groups.forEach(L.bind(function(tab) {
			var rows = this.children.filter(function(o) { return (o.tab || null) == tab.name })
				.map(function(o) {
					return E('div', { 'class': 'cbi-value', 'data-name': o.option }, [
						E('label', { 'class': 'cbi-value-title', 'for': o.cbid(sid) }, o.title),
						o.render(sid),
						o.description ? E('div', { 'class': 'cbi-value-description' }, o.description) : ''
					]);
				});
			node.appendChild(E('fieldset', { 'class': 'cbi-tab', 'data-tab': tab.name }, [
				tab.title ? E('legend', tab.title) : '' ].concat(rows)));
		}, this));
		return node;
	}
});

var TypedSection = AbstractSection.extend({
	cfgsections: function() {
		return uci.sections(this.map.config, this.sectiontype).map(function(s) { return s['.name'] });
	}
});

var TableSection = TypedSection.extend({
	render: function() {
		var config = this.map.config, self = this,
		    head = E('tr', { 'class': 'tr table-titles' }, [ E('th', { 'class': 'th' }, _('Name')) ]
		    	.concat(this.children.map(function(o) { return E('th', { 'class': 'th' }, o.title) }))
		    	.concat([ E('th', { 'class': 'th' }) ]));
		/* form.js's TableSection: a row of the options' descriptions under the titles */
		var descriptions = (!this.nodescriptions && this.children.some(function(o) { return o.description }))
			? E('tr', { 'class': 'tr cbi-section-table-descr' }, [ E('th', { 'class': 'th' }) ]
				.concat(this.children.map(function(o) {
					return E('th', { 'class': 'th cbi-section-table-cell', 'data-option': o.option }, o.description || '');
				})).concat([ E('th', { 'class': 'th' }) ]))
			: '';
		var rows = this.cfgsections().map(function(sid) {
			var section = uci.sections(config).filter(function(s) { return s['.name'] == sid })[0];
			return E('tr', { 'class': 'tr cbi-section-table-row', 'data-sid': sid }, [
				E('td', { 'class': 'td' }, section['.anonymous'] ? E('em', _('anonymous')) : sid)
			].concat(self.children.map(function(o) {
				return E('td', { 'class': 'td', 'data-title': o.title }, o.render(sid));
			})).concat([ E('td', { 'class': 'td' }, self.addremove ? E('button', {
				'class': 'cbi-button cbi-button-remove', 'type': 'button', 'data-remove': sid,
				'click': function() {
					return self.map.keepInput().then(function() {
						uci.remove(config, sid);
						return self.map.rerender();
					});
				}
			}, _('Delete')) : '') ]));
		});
		var name = E('input', { 'type': 'text', 'class': 'cbi-section-create-name',
		                        'placeholder': _('New name') });
		return E('div', { 'class': 'cbi-section', 'id': 'cbi-' + config + '-' + this.sectiontype }, [
			E('h3', this.title),
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : '',
			E('table', { 'class': 'table cbi-section-table' }, [ head, descriptions ].concat(rows)),
			this.addremove ? E('div', { 'class': 'cbi-section-create' }, [ name, ' ',
				E('button', { 'class': 'cbi-button cbi-button-add', 'type': 'button', 'id': 'add-' + this.sectiontype,
					'click': function() {
						if (!/^[A-Za-z0-9_]+$/.test(name.value))
							return ui.addNotification(null, E('p', _('Invalid section name')), 'error');
						return self.map.keepInput().then(function() {
							uci.add(config, self.sectiontype, self.anonymous ? null : name.value);
							return self.map.rerender();
						});
					} }, _('Add')) ]) : ''
		]);
	}
});

var Map = L.Class.extend({
	__init__: function(config, title, description) {
		this.config = config;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
	},
	section: function(Class) {
		var s = new (Function.prototype.bind.apply(Class,
			[ null, this ].concat(Array.prototype.slice.call(arguments, 1))))();
		this.children.push(s);
		return s;
	},
	lookupOption: function(name, section_id) {
		for (var i = 0; i < this.children.length; i++)
			for (var j = 0; j < this.children[i].children.length; j++)
				if (this.children[i].children[j].option == name)
					return [ this.children[i].children[j], section_id ];
		return null;
	},
	recheck: function() {
		var self = this;
		this.children.forEach(function(s) {
			s.cfgsections().forEach(function(sid) {
				s.children.forEach(function(o) { o.check(sid) });
			});
		});
		return self;
	},
	renderContents: function() {
		return E([ E('h2', this.title), E('div', { 'class': 'cbi-map-descr' }, this.description) ]
			.concat(this.children.map(function(s) { return s.render() })));
	},
	render: function() {
		return Promise.all(this.children.map(function(s) { return s.load() })).then(L.bind(function() {
			this.node = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + this.config }, this.renderContents());
			L.dom.bindClassInstance(this.node, this);
			window.setTimeout(L.bind(this.recheck, this), 0);
			return this.node;
		}, this));
	},
	rerender: function() {
		return Promise.all(this.children.map(function(s) { return s.load() })).then(L.bind(function() {
			L.dom.content(this.node, this.renderContents());
			this.recheck();
		}, this));
	},
	/* before a section is added or removed, what was typed goes into uci
	 * (the real form saves the map first, then renders it again) */
	keepInput: function() {
		return Promise.all(this.children.map(function(s) { return s.parse() })).catch(function(e) {
			ui.addNotification(_('Save error'), E('p', { 'data-save-error': '' }, e.message), 'error');
			throw e;
		});
	},

	save: function() {
		return Promise.all(this.children.map(function(s) { return s.parse() }))
			.then(function() { return uci.save() })
			.catch(function(e) {
				ui.addNotification(_('Save error'), E('p', { 'data-save-error': '' },
					_('An error occurred while saving the form: %s').format(e.message)), 'error');
				throw e;
			});
	}
});

return baseclass.extend({
	Map: Map,
	NamedSection: NamedSection,
	TypedSection: TypedSection,
	TableSection: TableSection,
	Value: Value,
	Flag: Flag,
	ListValue: ListValue,
	MultiValue: MultiValue,
	DynamicList: DynamicList,
	AbstractValue: AbstractValue
});
