'use strict';
'require baseclass';

/* STAND-IN for LuCI's ui class: notifications, a modal dialog, button
 * handlers that disable the button while their promise runs, and
 * changes.apply() as rpcd's `uci apply` (then the page reloads, as LuCI's
 * does; with nothing staged it says so and does not). */
return baseclass.extend({
	addNotification: function(title, children, classes) {
		var area = document.getElementById('notifications');
		var node = E('div', { 'class': 'alert-message ' + (classes || ''), 'data-notification': '' }, [
			title ? E('h4', title) : '', children ]);
		area.appendChild(node);
		return node;
	},

	/* as ui.js: one dialog at a time, in #modal_overlay */
	showModal: function(title, children, classes) {
		var overlay = document.getElementById('modal_overlay');
		if (!overlay) {
			overlay = E('div', { 'id': 'modal_overlay' }, E('div', { 'class': 'modal' }));
			document.body.appendChild(overlay);
		}
		var dialog = overlay.firstChild;
		dialog.className = 'modal ' + (classes || '');
		L.dom.content(dialog, [ title ? E('h4', title) : '' ].concat(children));
		document.body.classList.add('modal-overlay-active');
		return dialog;
	},

	hideModal: function() {
		document.body.classList.remove('modal-overlay-active');
	},

	createHandlerFn: function(ctx, fn) {
		var args = Array.prototype.slice.call(arguments, 2),
		    handler = (typeof(fn) == 'function') ? fn : ctx[fn];
		return function(ev) {
			var button = ev.currentTarget;
			button.disabled = true;
			button.classList.add('spinning');
			/* a failed save has been shown to the user already */
			return Promise.resolve(handler.apply(ctx, args.concat([ ev ]))).catch(function(e) {
				console.warn(e);
			}).finally(function() {
				button.disabled = false;
				button.classList.remove('spinning');
			});
		};
	},

	changes: {
		apply: function(checked) {
			return fetch('/ubus/uci.apply', {
				method: 'POST', headers: { 'Content-Type': 'application/json' },
				body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'call', params: [
					L.env.sessionid, 'uci', 'apply', { rollback: !!checked, timeout: 10 } ] })
			}).then(function(r) { return r.json() }).then(function(msg) {
				/* LuCI's apply_rollback answers 204 when nothing is staged */
				if (!msg.error && msg.result[0] === 5)
					return L.ui.showModal('', E('p', _('There are no changes to apply')));
				if (msg.error || msg.result[0] !== 0)
					throw new Error('uci apply failed: ' + JSON.stringify(msg.error || msg.result));
				document.body.setAttribute('data-applied', '1');
				window.location.reload();
			});
		}
	}
});
