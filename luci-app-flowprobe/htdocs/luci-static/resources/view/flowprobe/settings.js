'use strict';
'require view';
'require form';
'require rpc';
'require uci';
'require network';
'require tools.widgets as widgets';
'require flowprobe.validate as fpvalidate';

/*
 * Services -> Flow probe -> Settings: a form over /etc/config/flowprobe.
 * Every value is checked as the daemon checks it (flowprobe/validate.js),
 * so the form refuses what a reload would refuse, in the daemon's words.
 * Save & Apply commits; procd's config trigger then reloads the daemon.
 */

var callStatus = rpc.declare({ object: 'luci.flowprobe', method: 'status', expect: { '': {} } });

/* collector options whose valid values depend on each other */
var COLLECTOR_SIBLINGS = [ 'protocol', 'transport', 'biflow', 'field' ];
var TRUE_WORDS = [ '1', 'yes', 'on', 'true', 'enabled' ];
var DEFAULT_PORTS = { ipfix: '4739', netflow9: '2055', netflow5: '2055', sflow: '6343' };

/* OpenWrt's logical networks, read in the view's load() (network.js, as
 * every LuCI app reads them): form.js asks the options for their values
 * while the map loads, before any of its widgets exist */
var knownNetworks = [];

/* a sibling option's value: as typed once the form is shown, from the
 * config while it loads (form.js's AbstractSection.formvalue) */
function formValue(option, section_id, name) {
	return option.section.formvalue(section_id, name);
}

/* the daemon's verdict on one option, the others as the form holds them.
 * LuCI validates a checkbox with its input's value attribute (always
 * '1'), whether ticked or not: a Flag's value is read from the form */
function validator(type, siblings) {
	return function(section_id, value) {
		var others = {};
		if (this instanceof form.Flag)
			value = this.formvalue(section_id);
		(siblings || []).forEach(L.bind(function(name) {
			if (name != this.option)
				others[name] = formValue(this, section_id, name);
		}, this));
		return fpvalidate.checkOption(type, section_id, this.option, value, others);
	};
}

/*
 * What Save & Apply writes: what the user changed, nothing else. An option
 * the file holds keeps its text unless the user changed its value (a
 * default written by hand stays; 'yes' stays 'yes'); one the file lacks is
 * written only when set to something else than the default the form shows.
 * form.js would drop a flag equal to its default and write every list's
 * default into every section (enabled '1', transport 'udp' in a new
 * collector). Validation and hidden options are as form.js's parse().
 */
function sameValue(option, stored, value) {
	if (stored == null)
		return value == null || value === '' || value == option.default;
	if (option instanceof form.Flag)
		return (TRUE_WORDS.indexOf(String(stored)) >= 0) == (value == option.enabled);
	return L.toArray(stored).join(' ') == L.toArray(value).join(' ');
}

function writeChangesOnly(option) {
	option.parse = function(section_id) {
		if (!this.isActive(section_id))
			return Promise.resolve(this.retain ? null : this.remove(section_id));
		if (!this.isValid(section_id)) {
			var error = this.getValidationError ? this.getValidationError(section_id) : '';
			return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.')
				.format(this.title || this.option) + ' ' + error));
		}
		var stored = uci.get('flowprobe', section_id, this.option),
		    value = this.formvalue(section_id);
		if (sameValue(this, stored, value))
			return Promise.resolve();
		if (value == null || value === '')
			return Promise.resolve(this.remove(section_id));
		return Promise.resolve(this.write(section_id, value));
	};
	return option;
}

/* a ListValue's label in the grid (form.js shows the raw value) */
function choiceText(section_id) {
	var value = uci.get('flowprobe', section_id, this.option);
	if (value == null)
		value = this.default;
	var i = this.keylist.indexOf(String(value));
	return (i >= 0) ? this.vallist[i] : value;
}

/* `interface` is one list in UCI: logical networks from the picker and
 * devices typed by hand (as nlbwmon's local_network) */
function interfaceNames(option, section_id) {
	return [].concat(
		L.toArray(formValue(option, section_id, '_networks')),
		L.toArray(formValue(option, section_id, '_devices')));
}

function configuredInterfaces(section_id, networks) {
	return L.toArray(uci.get('flowprobe', section_id, 'interface')).filter(function(n) {
		return (knownNetworks.indexOf(n) >= 0) == networks;
	});
}

function writeInterfaces(section_id) {
	var names = interfaceNames(this, section_id),
	    old = L.toArray(uci.get('flowprobe', section_id, 'interface'));
	if (names.join(' ') == old.join(' '))
		return;
	if (names.length)
		uci.set('flowprobe', section_id, 'interface', names);
	else
		uci.unset('flowprobe', section_id, 'interface');
}

function validateInterfaces(section_id) {
	var names = interfaceNames(this, section_id),
	    enabled = formValue(this, section_id, 'enabled'),
	    source = formValue(this, section_id, 'source');
	/* interfaces are required when enabled, unless the source is conntrack alone */
	return fpvalidate.checkOption('flowprobe', 'main', 'interface', names,
	                              { enabled: enabled == null ? '0' : enabled, source: source });
}

/* `field` (a list) or `fields` (names split by spaces) are one option to
 * the daemon; the form writes the list */
function fieldsValue(section_id) {
	var list = uci.get('flowprobe', section_id, 'field');
	return L.toArray(list != null ? list : uci.get('flowprobe', section_id, 'fields'));
}

function writeFields(section_id, value) {
	uci.unset('flowprobe', section_id, 'fields');
	if (L.toArray(value).length)
		uci.set('flowprobe', section_id, 'field', L.toArray(value));
	else
		uci.unset('flowprobe', section_id, 'field');
}

return view.extend({
	load: function() {
		return Promise.all([
			uci.load('flowprobe'),
			callStatus().catch(function(e) { return e }),
			L.resolveDefault(network.getNetworks(), [])
		]);
	},

	renderStatusNote: function(status) {
		if (status instanceof Error)
			return E('div', { 'class': 'alert-message warning', 'data-state': 'stopped' },
				_('The flow probe is not running. A saved configuration it would refuse is marked below.'));
		if (status.config_error)
			return E('div', { 'class': 'alert-message warning', 'data-state': 'misconfigured' }, [
				_('The last configuration change was refused; the previous one is still running:'),
				' ', E('code', status.config_error)
			]);
		return E([]);
	},

	render: function(data) {
		var m, s, o, main = validator('flowprobe');

		knownNetworks = data[2].map(function(n) { return n.getName() })
			.filter(function(name) { return name != 'loopback' });

		m = new form.Map('flowprobe', _('Flow probe'),
			_('Meters the traffic of the chosen interfaces into flows and exports them to IPFIX / NetFlow collectors. Every value is checked as the daemon checks it.'));

		s = m.section(form.NamedSection, 'main', 'flowprobe', _('Metering'));
		s.addremove = false;
		s.tab('general', _('General'));
		s.tab('table', _('Flow table'));
		s.tab('capture', _('Capture'));
		s.tab('conntrack', _('Conntrack'));
		s.tab('history', _('History'));

		o = writeChangesOnly(s.taboption('general', form.Flag, 'enabled', _('Enabled'),
			_('Start metering. Needs at least one interface, unless the source is conntrack alone.')));
		o.validate = validateInterfaces;

		o = writeChangesOnly(s.taboption('general', form.ListValue, 'source', _('Metering source'),
			_('Packet capture meters the packets of the interfaces below. Conntrack reads the kernel\'s connection tracker instead: no packet is copied, both sides of NAT are reported, and traffic that flow offloading takes past capture is still counted (needs kmod-nf-conntrack-netlink). Both: status shows what capture did not see.')));
		o.value('capture', _('packet capture'));
		o.value('conntrack', _('conntrack'));
		o.value('both', _('both'));
		o.default = 'capture';
		o.validate = main;

		o = s.taboption('general', widgets.NetworkSelect, '_networks', _('Networks'),
			_('OpenWrt networks to meter; their devices are found through netifd.'));
		o.multiple = true;
		o.nocreate = true;
		o.cfgvalue = function(section_id) { return configuredInterfaces(section_id, true) };
		o.write = writeInterfaces;
		o.remove = writeInterfaces;
		o.validate = validateInterfaces;

		o = s.taboption('general', form.DynamicList, '_devices', _('Other devices'),
			_('Devices by name (eth0, br-lan, eth0.2) that are not one of the networks above.'));
		o.cfgvalue = function(section_id) { return configuredInterfaces(section_id, false) };
		o.write = writeInterfaces;
		o.remove = writeInterfaces;
		o.validate = validateInterfaces;

		o = writeChangesOnly(s.taboption('general', form.ListValue, 'direction', _('Direction'),
			_('"in": each forwarded packet is counted once, at the interface it arrives on.')));
		o.value('in', _('in (arriving)'));
		o.value('out', _('out (leaving)'));
		o.value('both', _('both'));
		o.default = 'in';
		o.validate = main;

		o = writeChangesOnly(s.taboption('general', form.ListValue, 'log_level', _('Log level')));
		[ 'debug', 'info', 'warning', 'error' ].forEach(function(level) { o.value(level) });
		o.default = 'info';
		o.validate = main;

		o = s.taboption('table', form.Value, 'max_flows', _('Flow table capacity'),
			_('Flows, about 90 bytes each, all allocated at start. 1 to 16777216, or auto: the smaller of 1/32 of the memory and twice nf_conntrack_max.'));
		o.placeholder = '65536';
		o.validate = main;

		o = s.taboption('table', form.Value, 'max_flows_ipv6', _('IPv6 flows at once'),
			_('Out of the capacity above; their addresses take 36 bytes a flow. 1 to the capacity, or auto: half of it. Beyond it, the policy below applies to IPv6 flows alone.'));
		o.placeholder = 'auto';
		o.validate = main;

		o = s.taboption('table', form.Value, 'max_fragments', _('Fragment table capacity'),
			_('IP datagrams waiting for their first fragment. 1 to 1048576.'));
		o.placeholder = '4096';
		o.validate = main;

		o = writeChangesOnly(s.taboption('table', form.ListValue, 'overflow', _('When the table is full'),
			_('Evict: the least recently seen flow ends, so new traffic is still metered. Refuse: new flows are not created and their packets are counted as dropped.')));
		o.value('evict', _('evict the oldest'));
		o.value('refuse', _('refuse new flows'));
		o.default = 'evict';
		o.validate = main;

		[
			[ 'idle_timeout', _('Idle timeout'), '15', _('A flow without packets this long ends.') ],
			[ 'active_timeout', _('Active timeout'), '300', _('A long flow is reported this often.') ],
			[ 'unanswered_timeout', _('Unanswered timeout'), '5', _('A flow with no reverse traffic ends sooner.') ],
			[ 'tcp_end_grace', _('TCP end grace'), '2', _('A TCP flow ends when both FINs are acknowledged or at a RST; this long after FIN both ways when the last ACK is never seen. 0 allowed.') ],
			[ 'fragment_timeout', _('Fragment timeout'), '30', _('How long fragments wait for their first fragment.') ]
		].forEach(function(t) {
			o = s.taboption('table', form.Value, t[0], t[1],
				t[3] + ' ' + _('Seconds, fractions allowed, up to 604800.'));
			o.placeholder = t[2];
			o.validate = main;
		});

		o = writeChangesOnly(s.taboption('table', form.Flag, 'biflow', _('Biflows'),
			_('One record per connection holding both directions (RFC 5103).')));
		o.validate = main;

		o = writeChangesOnly(s.taboption('table', form.Flag, 'icmp_errors', _('ICMP errors on their flows'),
			_('Count unreachable, fragmentation needed and time exceeded errors on the flow whose packet they quote (8 bytes more per flow slot).')));
		o.validate = main;

		o = writeChangesOnly(s.taboption('table', form.Flag, 'verify_checksums', _('Verify checksums'),
			_('Check IPv4 header, TCP, UDP and ICMP checksums: wrong ones are counted (in the totals and per flow), the packets still metered. Costs CPU per packet.')));
		o.validate = main;

		o = writeChangesOnly(s.taboption('capture', form.Flag, 'promisc', _('Promiscuous mode'),
			_('Only for a mirror (SPAN) port: a router sees what it forwards anyway.')));
		o.validate = main;

		o = s.taboption('capture', form.Value, 'filter', _('Capture filter'),
			_('A libpcap filter expression, as tcpdump\'s (e.g. "not port 22"). The probe\'s own exports are always left out.'));
		o.placeholder = _('everything');
		o.validate = main;

		o = s.taboption('capture', form.Value, 'snaplen', _('Snap length'),
			_('Bytes captured of each packet. 64 to 262144.'));
		o.placeholder = '128';
		o.validate = main;

		o = s.taboption('capture', form.Value, 'buffer_kb', _('Capture buffer (KiB)'),
			_('Per interface; 0 for libpcap\'s default. Up to 1048576.'));
		o.placeholder = '2048';
		o.validate = main;

		o = s.taboption('capture', form.Value, 'sampling', _('Sampling rate'),
			_('Meter 1 packet in N (1:N), for links faster than the router can meter whole; collectors are told N and scale. 1:1 meters every packet. Up to 1:16777215.'));
		o.placeholder = '1:1';
		o.validate = main;

		o = writeChangesOnly(s.taboption('capture', form.ListValue, 'sampling_algorithm',
			_('Sampling algorithm'), _('Random skips of mean N (as sFlow asks), or every N-th packet.')));
		o.value('random', _('random'));
		o.value('deterministic', _('every N-th packet'));
		o.default = 'random';
		o.validate = main;

		o = writeChangesOnly(s.taboption('capture', form.ListValue, 'tunnels', _('Tunnels'),
			_('Meter GRE, IP-in-IP, VXLAN, Geneve, L2TP and GTP-U traffic as the tunnel (outer) or as the packets inside it (inner), told apart by the tunnel\'s VNI or key, or both (each tunnel packet in two flows).')));
		o.value('outer', _('outer'));
		o.value('inner', _('inner'));
		o.value('both', _('both'));
		o.default = 'outer';
		o.validate = main;

		o = writeChangesOnly(s.taboption('capture', form.Flag, 'l2_flows', _('Layer-2 flows'),
			_('Meter frames that are not IP (ARP, LLDP, EAPOL, PPPoE discovery, ...) as flows by MAC addresses, VLAN and EtherType, in a template of their own, instead of only counting them.')));
		o.validate = main;

		/* shown when the source uses conntrack; kept in the file otherwise.
		 * [ option, title, placeholder (the daemon's default), description ] */
		[
		[ 'conntrack_max_connections', _('Connection table capacity'), '16384',
		  _('Connections tracked at once, about 200 bytes each, all allocated at start; beyond, new connections are counted as overflows and reported whole when they end. 1 to 16777216.') ],
		[ 'conntrack_dump_interval', _('Table read interval'), '30',
		  _('Seconds between reads of every connection\'s counters: long connections are reported at the first read after the active timeout. 1 to 604800.') ],
		[ 'conntrack_vanish_grace', _('Vanish grace'), '5',
		  _('Seconds a connection missing from such a read waits for its end event before it is reported with its last counters. 0 to 604800.') ],
		[ 'conntrack_buffer_kb', _('Event buffer (KiB)'), '1024',
		  _('Room for bursts of connections; 0 for the kernel\'s default. Events the kernel still drops are recovered by a table read. Up to 1048576.') ]
		].forEach(function(t) {
			o = s.taboption('conntrack', form.Value, t[0], t[1], t[3]);
			o.placeholder = t[2];
			o.depends('source', 'conntrack');
			o.depends('source', 'both');
			o.retain = true;
			o.validate = main;
		});

		/* the history store (Services -> Flow probe -> History) */
		o = writeChangesOnly(s.taboption('history', form.Flag, 'history', _('Keep a flow history'),
			_('Every record is kept on this router, within the budget below, for the History page and flowprobe query.')));
		o.validate = main;
		[
		[ 'history_dir', _('Directory'), '/tmp/flowprobe-history',
		  _('RAM (/tmp) by default: lost at reboot. Not the flash overlay: writes every few seconds wear it out. A USB disk or SD card for a long history.') ],
		[ 'history_kb', _('Budget (KiB)'), '4096',
		  _('Everything in the directory stays within it; the oldest hour of records goes first, the per-minute, hour and day series stay longer. 256 to 67108864.') ],
		[ 'history_flush', _('Write interval (s)'), '5',
		  _('Records are written this often: a power cut loses at most this much. 1 to 300.') ]
		].forEach(function(t) {
			o = s.taboption('history', form.Value, t[0], t[1], t[3]);
			o.placeholder = t[2];
			o.depends('history', '1');
			o.retain = true;
			o.validate = main;
		});

		/* a grid of the key settings; the rest in the Edit dialog, as LuCI's
		 * own lists of sections (firewall zones, DHCP hosts) */
		s = m.section(form.GridSection, 'collector', _('Collectors'),
			_('Every record goes to every enabled collector; collectors sharing a group take turns. Edit a collector for its fields, biflows, group and spool.'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;
		s.addbtntitle = _('Add collector');
		s.modaltitle = function(section_id) { return _('Collector %s').format(section_id) };
		s.renderSectionPlaceholder = function() {
			return E('tr', { 'class': 'tr placeholder', 'data-empty': 'collectors' },
				E('td', { 'class': 'td' }, E('em',
					_('No collector yet: records are counted, not sent. Add one below (a name, then Add collector).'))));
		};

		o = writeChangesOnly(s.option(form.Flag, 'enabled', _('Enabled')));
		o.default = '1';
		o.editable = true;
		o.validate = validator('collector');

		o = writeChangesOnly(s.option(form.ListValue, 'protocol', _('Protocol')));
		o.value('ipfix', 'IPFIX');
		o.value('netflow9', 'NetFlow v9');
		o.value('netflow5', 'NetFlow v5');
		o.value('sflow', _('sFlow v5 (sampled packets)'));
		o.default = 'ipfix';
		o.validate = validator('collector', COLLECTOR_SIBLINGS);
		o.textvalue = choiceText;

		o = s.option(form.Value, 'host', _('Host'), _('The collector\'s address or host name.'));
		o.rmempty = false;
		o.placeholder = '192.0.2.10';
		o.validate = validator('collector');
		o.textvalue = function(section_id) {
			return uci.get('flowprobe', section_id, 'host') || E('em', _('none'));
		};

		o = s.option(form.Value, 'port', _('Port'),
			_('UDP or TCP port; empty for the protocol\'s default (IPFIX 4739, NetFlow 2055, sFlow 6343).'));
		o.placeholder = '4739 / 2055 / 6343';
		o.validate = validator('collector');
		o.textvalue = function(section_id) {
			var port = uci.get('flowprobe', section_id, 'port');
			return port || _('%s (default)').format(
				DEFAULT_PORTS[uci.get('flowprobe', section_id, 'protocol') || 'ipfix'] || '?');
		};

		o = writeChangesOnly(s.option(form.ListValue, 'transport', _('Transport')));
		o.value('udp', 'UDP');
		o.value('tcp', _('TCP (IPFIX only)'));
		o.default = 'udp';
		o.validate = validator('collector', COLLECTOR_SIBLINGS);
		o.textvalue = choiceText;

		o = writeChangesOnly(s.option(form.Flag, 'biflow', _('Biflows'),
			_('One record per connection holding both directions (RFC 5103; IPFIX only).')));
		o.modalonly = true;
		o.validate = validator('collector', COLLECTOR_SIBLINGS);

		o = s.option(form.MultiValue, 'field', _('Fields'),
			_('The elements each record carries; none chosen: the standard record.'));
		fpvalidate.elements.forEach(function(e) { o.value(e[0]) });
		o.modalonly = true;
		o.placeholder = _('standard record');
		o.cfgvalue = fieldsValue;
		o.write = writeFields;
		o.remove = writeFields;
		o.validate = validator('collector', COLLECTOR_SIBLINGS);

		o = s.option(form.Value, 'group', _('Group'),
			_('Collectors with the same group take turns (load sharing) instead of each getting every record.'));
		o.modalonly = true;
		o.validate = validator('collector');

		o = s.option(form.Value, 'counter_interval', _('Counter interval'),
			_('sFlow: seconds between samples of the interfaces\' counters; 0 for none. Up to 3600.'));
		o.modalonly = true;
		o.placeholder = '20';
		o.depends('protocol', 'sflow');
		o.retain = true;
		o.validate = validator('collector');

		o = s.option(form.Value, 'spool_kb', _('Spool (KiB)'),
			_('Holds records through long outages. Off by default: it costs RAM (/var), or on flash, wear. Up to 4194304.'));
		o.modalonly = true;
		o.placeholder = _('off');
		o.validate = validator('collector');

		return m.render().then(L.bind(function(node) {
			return E([ this.renderStatusNote(data[1]), node ]);
		}, this));
	}
});
