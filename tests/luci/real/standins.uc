// Stand-ins, on the real ubusd, for what procd and netifd publish on a
// router and the real LuCI stack calls (tests/luci/real/stack.py runs this
// with ucode; neither procd nor netifd runs in the test):
//   system board|info           procd: the theme's header, luci-mod-status
//   network.interface dump      netifd: network.js (LuCI's network pickers)
//   network.interface.NAME status   netifd: the daemon resolves lan -> device
//   network.device status, network.wireless status, network get_proto_handlers
//   service event               procd's config trigger: on config.change of a
//                               package it is told of, what the init script's
//                               reload does (procd_set_param reload_signal
//                               HUP): SIGHUP to the pid in that package's
//                               pid file. Every event is appended to a log.
//
//   ucode standins.uc CONFIG_JSON
//   CONFIG_JSON: { "networks": { "lan": "r-cli", ... },
//                  "reload": { "flowprobe": "/path/daemon.pid" },
//                  "events": "/path/events.log", "hostname": "..." }
'use strict';

import * as ubus from 'ubus';
import * as uloop from 'uloop';
import { readfile, open } from 'fs';

const config = json(readfile(ARGV[0]));

uloop.init();

const conn = ubus.connect();
if (!conn) {
	warn(`standins: cannot connect to ubusd: ${ubus.error()}\n`);
	exit(1);
}

function log_event(entry) {
	const f = open(config.events, 'a');
	if (f) {
		f.write(sprintf('%J\n', entry));
		f.close();
	}
}

function interface_status(name, device) {
	return {
		interface: name, up: true, pending: false, available: true, autostart: true,
		dynamic: false, proto: 'static', device: device, l3_device: device,
		uptime: 60, 'ipv4-address': [], 'ipv6-address': [], 'ipv6-prefix': [],
		'ipv6-prefix-assignment': [], route: [], 'dns-server': [], 'dns-search': [],
		neighbors: [], inactive: {}, data: {}
	};
}

const objects = [];

push(objects, conn.publish('system', {
	board: {
		call: () => ({
			kernel: '6.1.0', hostname: config.hostname, system: 'test stack',
			model: 'flowprobe test stack', board_name: 'flowprobe-test',
			rootfs_type: 'overlay',
			release: { distribution: 'OpenWrt', version: 'test', revision: 'test',
			           target: 'x86/64', description: 'OpenWrt (flowprobe test stack)' }
		}),
		args: {}
	},
	info: {
		call: () => ({
			localtime: time(), uptime: 60, load: [ 0, 0, 0 ],
			memory: { total: 268435456, free: 134217728, shared: 0, buffered: 0,
			          available: 134217728, cached: 0 },
			swap: { total: 0, free: 0 }
		}),
		args: {}
	}
}));

push(objects, conn.publish('network.interface', {
	dump: {
		call: () => ({ interface: map(keys(config.networks),
			(name) => interface_status(name, config.networks[name])) }),
		args: {}
	}
}));

for (let name in config.networks) {
	let device = config.networks[name];
	push(objects, conn.publish('network.interface.' + name, {
		status: { call: () => interface_status(name, device), args: {} }
	}));
}

push(objects, conn.publish('network.device', {
	status: { call: () => ({}), args: { name: '' } }
}));

push(objects, conn.publish('network.wireless', {
	status: { call: () => ({}), args: {} }
}));

push(objects, conn.publish('network', {
	get_proto_handlers: {
		call: () => ({ static: { no_device: false, no_proto_task: true, immediate: true } }),
		args: {}
	}
}));

push(objects, conn.publish('service', {
	event: {
		call: function(req) {
			let type = req.args.type, data = req.args.data || {};
			let pidfile = (type == 'config.change') ? config.reload[data.package] : null;
			let entry = { type: type, package: data.package, signalled: null };
			if (pidfile) {
				let pid = trim(readfile(pidfile) || '');
				if (match(pid, /^[0-9]+$/)) {
					system([ 'kill', '-HUP', pid ]);
					entry.signalled = +pid;
				}
			}
			log_event(entry);
			return {};
		},
		args: { type: '', data: {} }
	}
}));

warn('standins: published\n');
uloop.run();
