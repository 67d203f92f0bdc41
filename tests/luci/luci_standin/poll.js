'use strict';
'require baseclass';

/* STAND-IN for LuCI's poll class: add(fn, seconds) calls fn every interval,
 * never twice at once (as the real queue does). */
return baseclass.extend({
	add: function(fn, interval) {
		var busy = false;
		window.setInterval(function() {
			if (busy)
				return;
			busy = true;
			Promise.resolve().then(fn).catch(function(e) { console.error(e) })
				.then(function() { busy = false });
		}, (interval || 5) * 1000);
	}
});
