'use strict';
'require view';
'require rpc';
'require ui';

/*
 * Services -> Flow probe -> History: the history store (option history) as
 * the daemon's `query` answers it (store/query.py): a stacked chart of a
 * time range by protocol or by the top hosts, with the anomalies the daemon
 * found marked on it; the top talkers and ports, each a link to its
 * records; histograms of flow size, duration and packet size. Every query
 * is one ubus call carrying the query as JSON (python-ubus needs every
 * declared argument: one string).
 */

var RANGES = [ [ 3600, _('1 hour') ], [ 6 * 3600, _('6 hours') ], [ 86400, _('24 hours') ],
               [ 7 * 86400, _('7 days') ], [ 30 * 86400, _('30 days') ] ],
    COLORS = [ '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#7f7f7f' ],
    HISTOGRAMS = [ [ 'bytes/log', _('Flow size (bytes)') ],
                   [ 'duration/log', _('Flow duration (ms)') ],
                   [ 'packet_size/log', _('Packet size (bytes)') ] ],
    TOP_SERIES = 5, WIDTH = 720, HEIGHT = 200;

var callQuery = rpc.declare({ object: 'luci.flowprobe', method: 'query', params: [ 'query' ],
                              expect: { '': {} } });
var callStatus = rpc.declare({ object: 'luci.flowprobe', method: 'status', expect: { '': {} } });

function ask(query) {
	return callQuery(JSON.stringify(query)).then(function(reply) {
		if (reply.error)
			throw new Error(reply.error);
		return reply;
	});
}

function bytes(n) {
	var units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ], i = 0;
	while (n >= 1024 && i < units.length - 1) {
		n /= 1024;
		i++;
	}
	return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function when(ms) {
	var d = new Date(ms), two = function(n) { return (n < 10 ? '0' : '') + n };
	return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate()) + ' ' +
		two(d.getHours()) + ':' + two(d.getMinutes());
}

function svg(tag, attributes, children) {
	var node = document.createElementNS('http://www.w3.org/2000/svg', tag);
	for (var name in attributes || {})
		node.setAttribute(name, attributes[name]);
	(children || []).forEach(function(child) { node.appendChild(child) });
	return node;
}

/* a bucket that gives about 48 bars; whole hours beyond two days (the
 * daemon answers those from its rollups) */
function bucketFor(seconds) {
	var bucket = Math.max(60, Math.floor(seconds / 48 / 60) * 60);
	return seconds > 2 * 86400 ? Math.max(3600, Math.floor(bucket / 3600) * 3600) : bucket;
}

/* stacked bars: series [{name, points: {time_ms: bytes}}] over times */
function stackedChart(series, times, anomalies, since, until) {
	var total = times.map(function(t) {
		return series.reduce(function(sum, s) { return sum + (s.points[t] || 0) }, 0);
	});
	var top = Math.max.apply(null, total.concat([ 1 ])), step = WIDTH / Math.max(times.length, 1),
	    nodes = [];
	anomalies.forEach(function(a) {
		if (a.end_ms < since || a.start_ms > until)
			return;
		var x0 = WIDTH * (Math.max(a.start_ms, since) - since) / (until - since),
		    x1 = WIDTH * (Math.min(a.end_ms + 300000, until) - since) / (until - since);
		nodes.push(svg('rect', { 'x': x0, 'y': 0, 'width': Math.max(x1 - x0, 2), 'height': HEIGHT,
		                        'fill': '#f2b8b8', 'data-anomaly': a.series }, [
			svg('title', {}, [ document.createTextNode(_('Anomaly on %s').format(a.series)) ]) ]));
	});
	times.forEach(function(t, i) {
		var y = HEIGHT;
		series.forEach(function(s, k) {
			var value = s.points[t] || 0, h = (HEIGHT - 10) * value / top;
			if (!h)
				return;
			y -= h;
			nodes.push(svg('rect', { 'x': i * step + 1, 'y': y, 'width': Math.max(step - 2, 1),
			                        'height': h, 'fill': COLORS[k % COLORS.length] }, [
				svg('title', {}, [ document.createTextNode('%s %s: %s'.format(when(t), s.name,
					bytes(value))) ]) ]));
		});
	});
	return E('div', { 'id': 'flowprobe-history-chart' }, [
		svg('svg', { 'width': WIDTH, 'height': HEIGHT, 'viewBox': '0 0 %d %d'.format(WIDTH, HEIGHT) },
			nodes),
		E('div', {}, series.map(function(s, k) {
			return E('span', { 'data-legend': s.name, 'style': 'margin-right:1em;color:' +
			                  COLORS[k % COLORS.length] }, '\u25a0 ' + s.name);
		})),
		E('div', { 'class': 'cbi-value-description' }, '%s \u2013 %s'.format(when(since), when(until)))
	]);
}

function histogram(groups, key) {
	var top = Math.max.apply(null, groups.map(function(g) { return g.flows }).concat([ 1 ])),
	    width = 240, height = 90, step = width / Math.max(groups.length, 1);
	return svg('svg', { 'width': width, 'height': height + 14, 'data-histogram': key },
		groups.map(function(g, i) {
			var h = height * g.flows / top;
			return svg('rect', { 'x': i * step + 1, 'y': height - h, 'width': step - 2,
			                    'height': h, 'fill': COLORS[0] }, [
				svg('title', {}, [ document.createTextNode('\u2265 %s: %d flows'.format(g[key],
					g.flows)) ]) ]);
		}).concat(groups.length ? [
			svg('text', { 'x': 0, 'y': height + 12, 'font-size': 10 },
				[ document.createTextNode(String(groups[0][key])) ]),
			svg('text', { 'x': width, 'y': height + 12, 'font-size': 10, 'text-anchor': 'end' },
				[ document.createTextNode('\u2265 ' + groups[groups.length - 1][key]) ]) ] : []));
}

return view.extend({
	range: 86400,
	by: 'protocol',

	load: function() {
		return callStatus().catch(function() { return {} });
	},

	render: function(status) {
		var history = status.history;
		this.anomalies = (history && history.anomalies) || [];
		var root = E('div', { 'class': 'cbi-map' }, [ E('h2', _('Flow history')) ]);
		if (!history || !history.enabled) {
			root.appendChild(E('p', { 'id': 'flowprobe-history-off' },
				history && history.error ? history.error :
					_('The history store is off: set “Keep a flow history” (option history) in the settings.')));
			return root;
		}
		var self = this;
		var ranges = E('div', { 'class': 'cbi-page-actions', 'style': 'text-align:left' },
			RANGES.map(function(r) {
				return E('button', { 'class': 'cbi-button', 'data-range': r[0],
				                     'click': function() { self.range = r[0]; self.refresh() } }, r[1]);
			}).concat([
				E('select', { 'id': 'flowprobe-history-by', 'change': function(ev) {
					self.by = ev.target.value;
					self.refresh();
				} }, [ E('option', { 'value': 'protocol' }, _('by protocol')),
				       E('option', { 'value': 'host' }, _('by top hosts')) ])
			]));
		this.body = E('div', { 'id': 'flowprobe-history' });
		this.records = E('div', { 'id': 'flowprobe-history-records' });
		root.appendChild(E('p', {}, _('%d records in %d segments, %s of %s on disk.').format(
			history.records_written || 0, history.segments || 0, bytes(history.disk_bytes || 0),
			bytes(history.budget_bytes || 0))));
		root.appendChild(ranges);
		root.appendChild(this.body);
		root.appendChild(this.records);
		this.refresh();
		return root;
	},

	refresh: function() {
		var self = this, range = this.range, bucket = bucketFor(range),
		    span = { since: range + 's' };
		L.dom.content(this.body, E('p', { 'class': 'spinning' }, _('Loading…')));
		return Promise.all([
			ask(Object.assign({ group_by: [ 'host' ], limit: 20 }, span)),
			ask(Object.assign({ group_by: [ 'dst_port' ], limit: 10 }, span)),
			Promise.all(HISTOGRAMS.map(function(h) {
				return ask(Object.assign({ group_by: [ h[0] ], limit: 20 }, span))
					.catch(function(e) { return { groups: [], error: e.message } });
			}))
		]).then(function(answers) {
			var hosts = answers[0], ports = answers[1], histograms = answers[2];
			var series = (self.by == 'host') ?
				Promise.all(hosts.groups.slice(0, TOP_SERIES).map(function(g) {
					return ask(Object.assign({ address: g.host, bucket: bucket, limit: 1000 }, span))
						.then(function(r) { return { name: g.host, groups: r.groups } });
				})) :
				ask(Object.assign({ group_by: [ 'protocol' ], bucket: bucket, limit: 1000 }, span))
					.then(function(r) {
						var by = {};
						r.groups.forEach(function(g) {
							(by[g.protocol] = by[g.protocol] || { name: String(g.protocol), groups: [] })
								.groups.push(g);
						});
						return Object.keys(by).map(function(k) { return by[k] });
					});
			return series.then(function(list) {
				self.draw(hosts, ports, histograms, list, bucket);
			});
		}).catch(function(e) {
			L.dom.content(self.body, E('p', { 'class': 'alert-message warning' }, e.message));
		});
	},

	draw: function(hosts, ports, histograms, list, bucket) {
		var self = this, since = hosts.since, until = hosts.until, times = [];
		for (var t = Math.floor(since / 1000 / bucket) * bucket * 1000; t < until; t += bucket * 1000)
			times.push(t);
		var series = list.map(function(s) {
			var points = {};
			s.groups.forEach(function(g) { points[g.time] = (points[g.time] || 0) + g.bytes });
			return { name: s.name, points: points };
		});
		var talkers = E('table', { 'class': 'table', 'id': 'flowprobe-talkers' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Host')), E('th', { 'class': 'th' }, _('Bytes')),
				E('th', { 'class': 'th' }, _('Packets')), E('th', { 'class': 'th' }, _('Flows')) ])
		].concat(hosts.groups.map(function(g) {
			return E('tr', { 'class': 'tr', 'data-talker': g.host }, [
				E('td', { 'class': 'td' }, E('a', { 'href': '#', 'click': function(ev) {
					ev.preventDefault();
					self.drill({ address: g.host }, g.host);
				} }, g.host)),
				E('td', { 'class': 'td' }, bytes(g.bytes)), E('td', { 'class': 'td' }, String(g.packets)),
				E('td', { 'class': 'td' }, String(g.flows)) ]);
		})));
		var portTable = E('table', { 'class': 'table', 'id': 'flowprobe-ports' },
			ports.groups.map(function(g) {
				return E('tr', { 'class': 'tr', 'data-port': g.dst_port }, [
					E('td', { 'class': 'td' }, E('a', { 'href': '#', 'click': function(ev) {
						ev.preventDefault();
						self.drill({ dst_port: g.dst_port }, _('port %d').format(g.dst_port));
					} }, String(g.dst_port))),
					E('td', { 'class': 'td' }, bytes(g.bytes)), E('td', { 'class': 'td' }, String(g.flows)) ]);
			}));
		L.dom.content(this.body, [
			stackedChart(series, times, this.anomalies, since, until),
			E('h3', _('Top talkers')), talkers,
			E('h3', _('Top destination ports')), portTable,
			E('h3', _('Histograms (flows per decade)')),
			E('div', { 'style': 'display:flex;gap:2em;flex-wrap:wrap' }, HISTOGRAMS.map(function(h, i) {
				return E('div', {}, [ E('div', {}, h[1]), histograms[i].error ?
					E('em', {}, histograms[i].error) :
					histogram(histograms[i].groups.slice().sort(function(a, b) {
						return a[h[0]] - b[h[0]] }), h[0]) ]);
			}))
		]);
	},

	drill: function(filter, label) {
		var self = this;
		return ask(Object.assign({ since: this.range + 's', limit: 100 }, filter)).then(function(r) {
			L.dom.content(self.records, [
				E('h3', _('Records of %s (%d of %d)').format(label, r.records.length, r.matched)),
				E('table', { 'class': 'table' }, r.records.map(function(f) {
					return E('tr', { 'class': 'tr', 'data-record': '' }, [
						E('td', { 'class': 'td' }, when(f.start_ms)),
						E('td', { 'class': 'td' }, String(f.protocol)),
						E('td', { 'class': 'td' }, '%s:%d'.format(f.src, f.src_port)),
						E('td', { 'class': 'td' }, '%s:%d'.format(f.dst, f.dst_port)),
						E('td', { 'class': 'td' }, bytes(f.bytes)),
						E('td', { 'class': 'td' }, f.interface || '-') ]);
				}))
			]);
		}).catch(function(e) { ui.addNotification(null, E('p', e.message)) });
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
