'use strict';
'require baseclass';
'require uci';
'require ui';

/*
 * STAND-IN for LuCI's form classes (luci-base form.js), only what
 * luci-app-flowprobe's settings view uses: Map, NamedSection, TypedSection,
 * TableSection, GridSection, tabs, and the options Flag, Value, ListValue,
 * MultiValue, DynamicList.
 *
 * Where the view relies on it, it does what form.js (openwrt-23.05 and
 * master) does, so the browser test catches what the real runtime would:
 * - the map loads before it renders: each option's load(section_id) reads
 *   UCI and cfgvalue(section_id, value) is called with it, while map.root is
 *   still undefined; map.lookupOption() searches map.root's DOM, so called
 *   then it throws the same TypeError (findElements: this.root
 *   .querySelectorAll); section.formvalue() gives cfgvalue() until the map
 *   is rendered, formvalue() after;
 * - parse() on save: an invalid value rejects with form.js's message; a
 *   Flag equal to its default is removed (rmempty), otherwise written; any
 *   other option is written when its form value differs from cfgvalue (so a
 *   ListValue missing from the file is written with its default), an empty
 *   one removed; an inactive option (depends) is removed unless `retain`;
 * - a failed Map.save() shows the "Save error" modal;
 * - widgets: a frame element with id cbid.CONFIG.SECTION.OPTION bound to a
 *   widget instance (getValue, setValue, isValid, getValidationError), the
 *   input inside with id widget.cbid... (a checkbox: data-widget-id); the
 *   option's element carries data-field; a change fires `widget-change`,
 *   which re-evaluates depends() and validates every active option again;
 *   a checkbox is validated with its input's value attribute (the Flag's
 *   `enabled`), ticked or not, as ui.js does;
 * - GridSection: the options as text in the table (a widget when
 *   `editable`), `modalonly` options only in the Edit dialog, Add creates
 *   the section and opens the dialog (Dismiss removes it again), the
 *   dialog's Save parses into UCI and re-renders the table;
 *   renderSectionPlaceholder() when there is no section.
 * Still different from form.js: widgets are plain HTML controls (MultiValue,
 * NetworkSelect and DynamicList are not LuCI's dropdowns; validation errors
 * are shown as text under the field, not as a tooltip); no datatypes; no
 * tab headers (every tab's options are shown, in fieldsets); no section
 * sorting, cloning or nested sections; TableSection rows are not draggable.
 */

function isEqual(a, b) {
	return JSON.stringify(a == null ? null : a) == JSON.stringify(b == null ? null : b);
}

/* a widget: what ui.js's AbstractElement offers form.js */
var Widget = L.Class.extend({
	__init__: function(option, section_id, node, input, read, write) {
		this.option = option;
		this.section_id = section_id;
		this.node = node;
		this.input = input;
		this.read = read;
		this.write = write;
		this.error = null;
		L.dom.bindClassInstance(node, this);
	},
	getValue: function() { return this.read(this.input) },
	setValue: function(value) { this.write(this.input, value) },
	isValid: function() { return this.error == null },
	getValidationError: function() { return this.error || '' },
	triggerValidation: function() {
		/* ui.js validates a checkbox with its value attribute, ticked or not */
		var value = (this.input.type == 'checkbox') ? this.option.enabled : this.getValue(),
		    result = this.option.validate(this.section_id, value),
		    message = (result === true || result == null) ? null
		    	: (typeof(result) == 'string' ? result : _('Invalid value'));
		this.error = message;
		this.input.classList.toggle('cbi-input-invalid', message != null);
		var shown = this.node.querySelector('.cbi-value-error');
		if (shown)
			L.dom.content(shown, message || '');
		return message == null;
	}
});

var AbstractValue = L.Class.extend({
	__init__: function(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title || '';
		this.description = description || '';
		this.rmempty = true;
		this.default = null;
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

	value: function(key, label) {
		this.keylist.push(String(key));
		this.vallist.push(label != null ? label : String(key));
	},

	stripTags: function(text) { return String(text || '').replace(/<[^>]*>/g, '') },
	cbid: function(section_id) { return 'cbid.' + this.map.config + '.' + section_id + '.' + this.option },

	load: function(section_id) { return uci.get(this.map.config, section_id, this.option) },

	cfgvalue: function(section_id, set_value) {
		if (arguments.length == 2) {
			this.data = this.data || {};
			this.data[section_id] = set_value;
		}
		return this.data ? this.data[section_id] : null;
	},

	getUIElement: function(section_id) {
		var node = this.map.root ? this.map.root.querySelector('[id="' + this.cbid(section_id) + '"]') : null;
		return node ? L.dom.findClassInstance(node) : null;
	},

	formvalue: function(section_id) {
		var widget = this.getUIElement(section_id);
		return widget ? widget.getValue() : null;
	},

	/* form.js: the raw value (a ListValue's too, not its label) */
	textvalue: function(section_id) {
		var value = this.cfgvalue(section_id);
		if (value == null)
			value = this.default;
		return (value != null) ? (Array.isArray(value) ? value.join(' ') : String(value)) : null;
	},

	isValid: function(section_id) {
		var widget = this.getUIElement(section_id);
		return widget ? widget.isValid() : true;
	},

	getValidationError: function(section_id) {
		var widget = this.getUIElement(section_id);
		return widget ? widget.getValidationError() : '';
	},

	isActive: function(section_id) {
		var field = this.map.findElement('data-field', this.cbid(section_id));
		return field != null && !field.classList.contains('hidden');
	},

	setActive: function(section_id, active) {
		var field = this.map.findElement('data-field', this.cbid(section_id));
		if (field)
			field.classList[active ? 'remove' : 'add']('hidden');
	},

	write: function(section_id, value) { uci.set(this.map.config, section_id, this.option, value) },
	remove: function(section_id) { uci.unset(this.map.config, section_id, this.option) },
	validate: function(section_id, value) { return true },

	parse: function(section_id) {
		var active = this.isActive(section_id);
		if (active && !this.isValid(section_id))
			return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.')
				.format(this.stripTags(this.title).trim() || this.option) + ' ' +
				this.getValidationError(section_id)));
		if (active) {
			var cval = this.cfgvalue(section_id), fval = this.formvalue(section_id);
			if (fval == null || fval === '' || (Array.isArray(fval) && !fval.length)) {
				if (this.rmempty || this.optional)
					return Promise.resolve(this.remove(section_id));
				return Promise.reject(new TypeError(_('Option "%s" must not be empty.')
					.format(this.stripTags(this.title).trim() || this.option)));
			}
			else if (this.forcewrite || !isEqual(cval, fval)) {
				return Promise.resolve(this.write(section_id, fval));
			}
		}
		else if (!this.retain) {
			return Promise.resolve(this.remove(section_id));
		}
		return Promise.resolve();
	},

	/* the control; read(input) and write(input, value) for the widget */
	renderInput: function(section_id, value) {
		return [ E('input', { 'type': 'text', 'class': 'cbi-input-text',
		                      'value': value != null ? value : '', 'placeholder': this.placeholder }),
		         function(input) { return input.value },
		         function(input, v) { input.value = (v != null) ? v : '' } ];
	},

	renderWidget: function(section_id) {
		var value = this.cfgvalue(section_id);
		if (value == null)
			value = this.default;
		var parts = this.renderInput(section_id, value), input = parts[0],
		    frame = E('div', { 'id': this.cbid(section_id) }, [ input, E('div', { 'class': 'cbi-value-error' }) ]);
		if (input.type == 'checkbox')
			input.setAttribute('data-widget-id', 'widget.' + this.cbid(section_id));
		else
			input.id = 'widget.' + this.cbid(section_id);
		var widget = new Widget(this, section_id, frame, input, parts[1], parts[2]),
		    changed = function() {
		    	widget.triggerValidation();
		    	frame.dispatchEvent(new CustomEvent('widget-change', { bubbles: true }));
		    };
		input.addEventListener('input', changed);
		input.addEventListener('change', changed);
		return frame;
	},

	/* the option's element: a row with title and description, or a cell */
	render: function(section_id, in_table) {
		var field = this.renderWidget(section_id),
		    node = in_table
		    	? E('td', { 'class': 'td cbi-value-field', 'data-title': this.title, 'data-name': this.option }, field)
		    	: E('div', { 'class': 'cbi-value', 'data-name': this.option }, [
		    		E('label', { 'class': 'cbi-value-title', 'for': 'widget.' + this.cbid(section_id) }, this.title),
		    		E('div', { 'class': 'cbi-value-field' }, [ field,
		    			this.description ? E('div', { 'class': 'cbi-value-description' }, this.description) : '' ])
		    	]);
		node.setAttribute('data-field', this.cbid(section_id));
		if (this.deps.length)
			node.classList.add('hidden');
		node.addEventListener('widget-change', L.bind(this.map.checkDepends, this.map));
		L.dom.bindClassInstance(node, this);
		return node;
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
	renderInput: function(section_id, value) {
		var self = this;
		return [ E('input', { 'type': 'checkbox', 'class': 'cbi-input-checkbox',
		                      'checked': (value == this.enabled) ? '' : null }),
		         function(input) { return input.checked ? self.enabled : self.disabled },
		         function(input, v) { input.checked = (v == self.enabled) } ];
	},
	textvalue: function(section_id) {
		var value = this.cfgvalue(section_id);
		return ((value != null ? value : this.default) == this.enabled) ? _('Yes') : _('No');
	},
	/* form.js's FlagValue.parse */
	parse: function(section_id) {
		if (this.isActive(section_id)) {
			var fval = this.formvalue(section_id);
			if (!this.isValid(section_id))
				return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.')
					.format(this.stripTags(this.title).trim() || this.option) + ' ' +
					this.getValidationError(section_id)));
			if (fval == this.default && (this.optional || this.rmempty))
				return Promise.resolve(this.remove(section_id));
			return Promise.resolve(this.write(section_id, fval));
		}
		else if (!this.retain) {
			return Promise.resolve(this.remove(section_id));
		}
	}
});

var ListValue = AbstractValue.extend({
	renderInput: function(section_id, value) {
		return [ E('select', { 'class': 'cbi-input-select' }, this.keylist.map(L.bind(function(key, i) {
			return E('option', { 'value': key, 'selected': key == value ? '' : null }, this.vallist[i]);
		}, this))),
		function(input) { return input.value },
		function(input, v) { input.value = v } ];
	}
});

function selectedOptions(input) {
	return Array.prototype.filter.call(input.options, function(o) { return o.selected })
		.map(function(o) { return o.value });
}

function selectOptions(input, values) {
	values = L.toArray(values);
	Array.prototype.forEach.call(input.options, function(o) { o.selected = values.indexOf(o.value) >= 0 });
}

var MultiValue = AbstractValue.extend({
	renderInput: function(section_id, value) {
		var values = L.toArray(value);
		return [ E('select', { 'class': 'cbi-input-select', 'multiple': '', 'size': this.size || 4,
		                       'title': this.placeholder }, this.keylist.map(L.bind(function(key, i) {
			return E('option', { 'value': key, 'selected': values.indexOf(key) >= 0 ? '' : null },
				this.vallist[i]);
		}, this))), selectedOptions, selectOptions ];
	}
});

var DynamicList = AbstractValue.extend({
	renderInput: function(section_id, value) {
		var list = E('div', { 'class': 'cbi-dynlist' });
		function changed() { list.dispatchEvent(new Event('change', { bubbles: true })) }
		function item(v) {
			var node = E('div', { 'class': 'item' }, [
				E('input', { 'type': 'text', 'class': 'cbi-input-text', 'value': v }),
				E('button', { 'class': 'cbi-button', 'type': 'button', 'click': function() {
					list.removeChild(node);
					changed();
				} }, '\u00d7')
			]);
			return node;
		}
		var entry = E('input', { 'type': 'text', 'class': 'cbi-input-text add-item',
		                         'placeholder': this.placeholder });
		list.appendChild(E('div', { 'class': 'add' }, [ entry,
			E('button', { 'class': 'cbi-button cbi-button-add', 'type': 'button', 'click': function() {
				if (entry.value.trim() == '')
					return;
				list.insertBefore(item(entry.value.trim()), entry.parentNode);
				entry.value = '';
				changed();
			} }, _('Add')) ]));
		function write(node, values) {
			Array.prototype.slice.call(node.querySelectorAll('.item')).forEach(function(n) {
				node.removeChild(n);
			});
			L.toArray(values).forEach(function(v) { node.insertBefore(item(v), node.lastChild) });
		}
		write(list, value);
		return [ list, function(node) {
			return Array.prototype.map.call(node.querySelectorAll('.item input'), function(i) {
				return i.value.trim();
			}).filter(function(v) { return v != '' });
		}, write ];
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
	/* form.js: before the map is rendered these are the config's values */
	formvalue: function(section_id, option) {
		for (var i = 0; i < this.children.length; i++)
			if (this.children[i].option == option)
				return this.map.root ? this.children[i].formvalue(section_id)
				                     : this.children[i].cfgvalue(section_id);
		return null;
	},
	cfgvalue: function(section_id, option) {
		for (var i = 0; i < this.children.length; i++)
			if (this.children[i].option == option)
				return this.children[i].cfgvalue(section_id);
		return null;
	},
	load: function() {
		var tasks = [];
		this.cfgsections().forEach(L.bind(function(sid) {
			this.children.forEach(function(o) {
				tasks.push(Promise.resolve(o.load(sid)).then(function(value) {
					o.cfgvalue(sid, value);
				}));
			});
		}, this));
		return Promise.all(tasks);
	},
	parse: function() {
		var tasks = [];
		this.cfgsections().forEach(L.bind(function(sid) {
			this.children.forEach(function(o) { tasks.push(o.parse(sid)) });
		}, this));
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
				.map(function(o) { return o.render(sid) });
			node.appendChild(E('fieldset', { 'class': 'cbi-tab', 'data-tab': tab.name }, [
				tab.title ? E('legend', tab.title) : '' ].concat(rows)));
		}, this));
		return node;
	}
});

var TypedSection = AbstractSection.extend({
	cfgsections: function() {
		return uci.sections(this.map.config, this.sectiontype).map(function(s) { return s['.name'] });
	},
	renderSectionPlaceholder: function() {
		return E('tr', { 'class': 'tr placeholder' },
			E('td', { 'class': 'td' }, E('em', _('This section contains no values yet'))));
	},
	/* the option's cell in the table */
	renderCell: function(o, sid) { return o.render(sid, true) },
	tableOptions: function() { return this.children },
	rowActions: function(sid) {
		var self = this, config = this.map.config;
		return this.addremove ? [ E('button', {
			'class': 'cbi-button cbi-button-remove', 'type': 'button', 'data-remove': sid,
			'click': function() {
				uci.remove(config, sid);
				return self.map.reset();
			}
		}, _('Delete')) ] : [];
	},
	handleAdd: function(name) {
		uci.add(this.map.config, this.sectiontype, this.anonymous ? null : name);
		return this.map.reset();
	},
	render: function() {
		var config = this.map.config, self = this, options = this.tableOptions(),
		    head = E('tr', { 'class': 'tr table-titles' }, [ E('th', { 'class': 'th' }, _('Name')) ]
		    	.concat(options.map(function(o) { return E('th', { 'class': 'th' }, o.title) }))
		    	.concat([ E('th', { 'class': 'th' }) ]));
		/* form.js's TableSection: a row of the options' descriptions under the titles */
		var descriptions = (!this.nodescriptions && options.some(function(o) { return o.description }))
			? E('tr', { 'class': 'tr cbi-section-table-descr' }, [ E('th', { 'class': 'th' }) ]
				.concat(options.map(function(o) {
					return E('th', { 'class': 'th cbi-section-table-cell', 'data-option': o.option }, o.description || '');
				})).concat([ E('th', { 'class': 'th' }) ]))
			: '';
		var sids = this.cfgsections();
		var rows = sids.map(function(sid) {
			var section = uci.sections(config).filter(function(s) { return s['.name'] == sid })[0];
			/* form.js: the name is the row's data-title, which the theme shows
			 * as a first cell (::before) */
			return E('tr', { 'class': 'tr cbi-section-table-row', 'data-sid': sid,
			                 'data-title': section['.anonymous'] ? null : sid },
				options.map(function(o) { return self.renderCell(o, sid) })
			 .concat([ E('td', { 'class': 'td cbi-section-table-cell nowrap cbi-section-actions' },
			             self.rowActions(sid)) ]));
		});
		if (!sids.length)
			rows = [ this.renderSectionPlaceholder() ];
		var name = E('input', { 'type': 'text', 'class': 'cbi-section-create-name',
		                        'placeholder': _('New name') });
		return E('div', { 'class': 'cbi-section', 'id': 'cbi-' + config + '-' + this.sectiontype }, [
			E('h3', this.title),
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : '',
			E('table', { 'class': 'table cbi-section-table' }, [ head, descriptions ].concat(rows)),
			this.addremove ? E('div', { 'class': 'cbi-section-create' }, [ this.anonymous ? '' : name, ' ',
				E('button', { 'class': 'cbi-button cbi-button-add', 'type': 'button',
					'title': this.addbtntitle || _('Add'),
					'click': function() {
						if (!self.anonymous && !/^[A-Za-z0-9_]+$/.test(name.value))
							return ui.addNotification(null, E('p', _('Invalid section name')), 'error');
						return self.handleAdd(name.value);
					} }, this.addbtntitle || _('Add')) ]) : ''
		]);
	}
});

var TableSection = TypedSection.extend({});

var GridSection = TableSection.extend({
	tableOptions: function() {
		return this.children.filter(function(o) { return !o.modalonly });
	},
	renderCell: function(o, sid) {
		if (o.editable)
			return o.render(sid, true);
		var value = o.textvalue(sid);
		return E('td', { 'class': 'td cbi-value-field', 'data-title': o.title, 'data-name': o.option },
			(value != null && value !== '') ? value : E('em', _('none')));
	},
	rowActions: function(sid) {
		return [ E('button', { 'class': 'cbi-button cbi-button-edit', 'type': 'button',
			'title': _('Edit this section'),
			'click': ui.createHandlerFn(this, 'renderMoreOptionsModal', sid) }, _('Edit')) ]
			.concat(this.super('rowActions', [ sid ]));
	},
	parse: function() {
		var tasks = [];
		this.cfgsections().forEach(L.bind(function(sid) {
			this.children.forEach(function(o) {
				if (o.editable && !o.modalonly)
					tasks.push(o.parse(sid));
			});
		}, this));
		return Promise.all(tasks);
	},
	handleAdd: function(name) {
		this.addedSection = uci.add(this.map.config, this.sectiontype, this.anonymous ? null : name);
		return this.renderMoreOptionsModal(this.addedSection);
	},
	renderMoreOptionsModal: function(section_id) {
		var parent = this.map, self = this,
		    m = new Map(parent.config, null, null),
		    s = m.section(NamedSection, section_id, this.sectiontype);
		m.parent = parent;
		this.children.forEach(function(o1) {
			if (o1.modalonly === false)
				return;
			var o2 = s.option(o1.constructor, o1.option, o1.title, o1.description);
			for (var k in o1)
				if (o1.hasOwnProperty(k) && [ 'map', 'section', 'option', 'title', 'description' ].indexOf(k) < 0)
					o2[k] = o1[k];
		});
		var title = this.modaltitle ? this.modaltitle(section_id) : parent.title + ' - ' + section_id;
		return m.render().then(function(nodes) {
			ui.showModal(title, [ nodes, E('div', { 'class': 'right' }, [
				E('button', { 'class': 'cbi-button', 'click': function() {
					if (self.addedSection != null)
						uci.remove(parent.config, self.addedSection);
					delete self.addedSection;
					ui.hideModal();
					return parent.reset();
				} }, _('Dismiss')), ' ',
				E('button', { 'class': 'cbi-button cbi-button-positive important',
					'click': ui.createHandlerFn(self, function() {
						/* as form.js: the dialog closes once the table shows the change */
						return m.save(null, true).then(function() {
							delete self.addedSection;
							return parent.reset();
						}).then(function() {
							ui.hideModal();
						}, function(e) {
							ui.addNotification(null, E('p', { 'data-save-error': '' }, e.message), 'error');
						});
					}) }, _('Save'))
			]) ], 'cbi-modal');
		});
	}
});

var Map = L.Class.extend({
	__init__: function(config, title, description) {
		this.config = config;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.data = uci;
	},
	section: function(Class) {
		var s = new (Function.prototype.bind.apply(Class,
			[ null, this ].concat(Array.prototype.slice.call(arguments, 1))))();
		this.children.push(s);
		return s;
	},
	/* as form.js: no root before render(), and then a TypeError */
	findElements: function(attr, value) {
		return this.root.querySelectorAll(value != null ? '[' + attr + '="' + value + '"]' : attr);
	},
	findElement: function(attr, value) {
		return this.findElements(attr, value)[0] || null;
	},
	lookupOption: function(name, section_id, config_name) {
		var id = 'cbid.%s.%s.%s'.format(config_name || this.config, section_id, name),
		    elem = this.findElement('data-field', id),
		    inst = elem ? L.dom.findClassInstance(elem) : null;
		return (inst instanceof AbstractValue) ? [ inst, section_id ] : null;
	},
	isDependencySatisfied: function(deps, section_id) {
		if (!deps.length)
			return true;
		var map = this;
		return deps.some(function(dep) {
			return Object.keys(dep).every(function(name) {
				var found = map.lookupOption(name, section_id), value = found ? found[0].formvalue(section_id) : null;
				return String(value != null ? value : '') == String(dep[name]);
			});
		});
	},
	/* form.js: on every widget-change, depends() again, then every active
	 * option validates itself again */
	checkDepends: function(ev) {
		var map = this;
		this.children.forEach(function(s) {
			s.cfgsections().forEach(function(sid) {
				s.children.forEach(function(o) {
					if (o.deps.length)
						o.setActive(sid, map.isDependencySatisfied(o.deps, sid));
					var widget = ev ? o.getUIElement(sid) : null;
					if (widget && o.isActive(sid))
						widget.triggerValidation();
				});
			});
		});
	},
	load: function() {
		return Promise.all(this.children.map(function(s) { return s.load() }));
	},
	renderContents: function() {
		var node = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + this.config }, [
			this.title ? E('h2', this.title) : '',
			this.description ? E('div', { 'class': 'cbi-map-descr' }, this.description) : ''
		].concat(this.children.map(function(s) { return s.render() })));
		if (this.root)
			L.dom.content(this.root, Array.prototype.slice.call(node.childNodes));
		else
			this.root = node;
		L.dom.bindClassInstance(this.root, this);
		this.checkDepends();
		return this.root;
	},
	render: function() {
		return this.load().then(L.bind(this.renderContents, this));
	},
	reset: function() {
		return this.load().then(L.bind(this.renderContents, this));
	},
	parse: function() {
		return Promise.all(this.children.map(function(s) { return s.parse() }));
	},
	save: function(cb, silent) {
		this.checkDepends();
		return this.parse()
			.then(cb)
			.then(function() { return uci.save() })
			.then(L.bind(this.load, this))
			.catch(function(e) {
				if (!silent)
					ui.showModal(_('Save error'), [
						E('p', {}, [ _('An error occurred while saving the form:') ]),
						E('p', { 'data-save-error': '' }, [ E('em', { 'style': 'white-space:normal' }, [ e.message ]) ]),
						E('div', { 'class': 'right' }, [
							E('button', { 'class': 'cbi-button', 'click': ui.hideModal }, [ _('Dismiss') ])
						])
					]);
				return Promise.reject(e);
			}).then(L.bind(this.renderContents, this));
	}
});

return baseclass.extend({
	Map: Map,
	NamedSection: NamedSection,
	TypedSection: TypedSection,
	TableSection: TableSection,
	GridSection: GridSection,
	Value: Value,
	Flag: Flag,
	ListValue: ListValue,
	MultiValue: MultiValue,
	DynamicList: DynamicList,
	AbstractValue: AbstractValue
});
