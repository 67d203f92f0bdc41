'use strict';
'require ui';

/* STAND-IN for LuCI's view class (luci.js LuCI.view): "Loading view…"
 * until load() and render() are done, an error in them shown as LuCI.error
 * does (a "danger" notification over the spinner), the page's Save & Apply /
 * Save / Reset buttons unless a view sets its handlers to null, and the
 * default handlers that save every form.Map on the page, then apply
 * (ui.changes.apply). */
return L.Class.extend({
	__init__: function() {
		var target = document.getElementById('view');
		L.dom.content(target, E('div', { 'class': 'spinning' }, _('Loading view…')));
		return Promise.resolve(this.load())
			.then(L.bind(this.render, this))
			.then(L.bind(function(node) {
				L.dom.content(target, node);
				target.appendChild(this.addFooter());
				document.body.setAttribute('data-rendered', '1');
			}, this))
			.catch(function(e) {
				ui.addNotification(e.name || _('Runtime error'), E('pre', { 'id': 'standin-error' },
					String(e.stack || e)), 'danger');
			});
	},

	load: function() {},
	render: function() {},

	handleSave: function(ev) {
		var maps = Array.prototype.slice.call(document.querySelectorAll('#view .cbi-map'));
		return Promise.all(maps.map(function(node) {
			return L.dom.findClassInstance(node).save();
		}));
	},

	handleSaveApply: function(ev, mode) {
		return this.handleSave(ev).then(function() {
			return ui.changes.apply(mode == '0');
		});
	},

	handleReset: function(ev) {
		window.location.reload();
	},

	addFooter: function() {
		var footer = E('div', { 'class': 'cbi-page-actions' });
		if (this.handleSaveApply)
			footer.appendChild(E('button', { 'class': 'cbi-button cbi-button-apply', 'id': 'save-apply',
				'click': ui.createHandlerFn(this, 'handleSaveApply') }, _('Save & Apply')));
		if (this.handleSave)
			footer.appendChild(E('button', { 'class': 'cbi-button cbi-button-save', 'id': 'save',
				'click': ui.createHandlerFn(this, 'handleSave') }, _('Save')));
		if (this.handleReset)
			footer.appendChild(E('button', { 'class': 'cbi-button cbi-button-reset', 'id': 'reset',
				'click': ui.createHandlerFn(this, 'handleReset') }, _('Reset')));
		return footer;
	}
});
