"""The information elements flowprobe exports, by their IANA IPFIX names.

Each element says how IPFIX carries it (RFC 7012 / IANA registry, RFC 5103
reverse elements under enterprise 29305), how NetFlow v9 carries it (RFC
3954 field types; None: not at all), and which C packer field fills it.
A collector profile's field list is a list of these names.
"""

from flowprobe._cmeter_ffi import lib
from flowprobe.frozen import Frozen, replace

REVERSE_PEN = 29305  # RFC 5103
LAYER2 = 2   # the "family" of layer-2 flows' template (records of ip_version 0)


class Element(Frozen):
    name: str
    ipfix_id: int
    code: int                   # lib.FP_FIELD_*: fills the IPFIX field
    family: int = 0             # 4 or 6: only in that address family's template
    enterprise: int = 0
    v9_id: int = None           # NetFlow v9 field type
    v9_code: int = None         # its packer field when it differs (times are uptime there)

    @property
    def length(self):
        return lib.fp_field_length(self.code)

    @property
    def v9_length(self):
        return lib.fp_field_length(self.v9_code or self.code)


def _elements():
    f = lib
    return [
        Element("octetDeltaCount", 1, f.FP_FIELD_OCTETS, v9_id=1),
        Element("packetDeltaCount", 2, f.FP_FIELD_PACKETS, v9_id=2),
        Element("protocolIdentifier", 4, f.FP_FIELD_PROTOCOL, v9_id=4),
        Element("ipClassOfService", 5, f.FP_FIELD_TOS, v9_id=5),
        # unsigned16 in IANA's registry; one byte is a reduced-size encoding
        # (RFC 7011 §6.2) that NetFlow v9 collectors also expect
        Element("tcpControlBits", 6, f.FP_FIELD_TCP_FLAGS, v9_id=6),
        Element("sourceTransportPort", 7, f.FP_FIELD_SRC_PORT, v9_id=7),
        Element("sourceIPv4Address", 8, f.FP_FIELD_SRC_ADDR4, family=4, v9_id=8),
        Element("ingressInterface", 10, f.FP_FIELD_INGRESS, v9_id=10),
        Element("destinationTransportPort", 11, f.FP_FIELD_DST_PORT, v9_id=11),
        Element("destinationIPv4Address", 12, f.FP_FIELD_DST_ADDR4, family=4, v9_id=12),
        Element("egressInterface", 14, f.FP_FIELD_EGRESS, v9_id=14),
        # enrich/ (option routing): the next hop the kernel's FIB chose
        Element("ipNextHopIPv4Address", 15, f.FP_FIELD_NEXT_HOP4, family=4, v9_id=15),
        Element("ipNextHopIPv6Address", 62, f.FP_FIELD_NEXT_HOP6, family=6, v9_id=62),
        # enrich/ (option prefix_file): the most specific prefix's AS and length
        Element("bgpSourceAsNumber", 16, f.FP_FIELD_SRC_AS, v9_id=16),
        Element("bgpDestinationAsNumber", 17, f.FP_FIELD_DST_AS, v9_id=17),
        Element("sourceIPv4PrefixLength", 9, f.FP_FIELD_SRC_PREFIX_LENGTH, family=4, v9_id=9),
        Element("destinationIPv4PrefixLength", 13, f.FP_FIELD_DST_PREFIX_LENGTH, family=4,
                v9_id=13),
        Element("sourceIPv6PrefixLength", 29, f.FP_FIELD_SRC_PREFIX_LENGTH, family=6, v9_id=29),
        Element("destinationIPv6PrefixLength", 30, f.FP_FIELD_DST_PREFIX_LENGTH, family=6,
                v9_id=30),
        # the first frame's, per direction: kept only while a collector asks (MAC_FIELDS)
        Element("sourceMacAddress", 56, f.FP_FIELD_SRC_MAC, v9_id=56),
        Element("destinationMacAddress", 80, f.FP_FIELD_DST_MAC, v9_id=80),
        Element("sourceIPv6Address", 27, f.FP_FIELD_SRC_ADDR6, family=6, v9_id=27),
        Element("destinationIPv6Address", 28, f.FP_FIELD_DST_ADDR6, family=6, v9_id=28),
        Element("icmpTypeCodeIPv4", 32, f.FP_FIELD_ICMP_TYPE_CODE, family=4, v9_id=32),
        Element("vlanId", 58, f.FP_FIELD_VLAN, v9_id=58),
        Element("flowDirection", 61, f.FP_FIELD_DIRECTION, v9_id=61),
        Element("ipVersion", 60, f.FP_FIELD_IP_VERSION, v9_id=60),
        Element("flowEndReason", 136, f.FP_FIELD_END_REASON),
        # v9 has one ICMP_TYPE (32) for both families; collectors know no other
        Element("icmpTypeCodeIPv6", 139, f.FP_FIELD_ICMP_TYPE_CODE, family=6, v9_id=32),
        Element("flowStartMilliseconds", 152, f.FP_FIELD_START_MS,
                v9_id=22, v9_code=f.FP_FIELD_START_UPTIME),   # FIRST_SWITCHED
        Element("flowEndMilliseconds", 153, f.FP_FIELD_END_MS,
                v9_id=21, v9_code=f.FP_FIELD_END_UPTIME),     # LAST_SWITCHED
        Element("dot1qCustomerVlanId", 245, f.FP_FIELD_INNER_VLAN),
        Element("ipSecSPI", 295, f.FP_FIELD_SPI),
        # conntrack source: the original direction after NAT (RFC 8158 / IANA; v9
        # carries the same numbers as Cisco NSEL does, and nfdump reads them)
        Element("postNATSourceIPv4Address", 225, f.FP_FIELD_POST_SRC_ADDR4, family=4, v9_id=225),
        Element("postNATDestinationIPv4Address", 226, f.FP_FIELD_POST_DST_ADDR4, family=4,
                v9_id=226),
        Element("postNAPTSourceTransportPort", 227, f.FP_FIELD_POST_SRC_PORT, v9_id=227),
        Element("postNAPTDestinationTransportPort", 228, f.FP_FIELD_POST_DST_PORT, v9_id=228),
        Element("postNATSourceIPv6Address", 281, f.FP_FIELD_POST_SRC_ADDR6, family=6, v9_id=281),
        Element("postNATDestinationIPv6Address", 282, f.FP_FIELD_POST_DST_ADDR6, family=6,
                v9_id=282),
        Element("flowId", 148, f.FP_FIELD_FLOW_ID),   # the conntrack id
        # inner flows of a tunnel: which one (VNI, GRE key, ...; cmeter/tunnel.h)
        Element("layer2SegmentId", 351, f.FP_FIELD_LAYER2_SEGMENT_ID),
        # layer-2 flows (l2_flows): only in their own template (LAYER2_FIELDS)
        Element("ethernetType", 256, f.FP_FIELD_ETHERNET_TYPE, family=LAYER2, v9_id=256),
        Element("reverseOctetDeltaCount", 1, f.FP_FIELD_REVERSE_OCTETS, enterprise=REVERSE_PEN),
        Element("reversePacketDeltaCount", 2, f.FP_FIELD_REVERSE_PACKETS, enterprise=REVERSE_PEN),
        Element("reverseTcpControlBits", 6, f.FP_FIELD_REVERSE_TCP_FLAGS, enterprise=REVERSE_PEN),
        Element("reverseFlowStartMilliseconds", 152, f.FP_FIELD_REVERSE_START_MS,
                enterprise=REVERSE_PEN),
        Element("reverseFlowEndMilliseconds", 153, f.FP_FIELD_REVERSE_END_MS,
                enterprise=REVERSE_PEN),
    ]


ELEMENTS = {e.name: e for e in _elements()}

# a standard record: 5-tuple, counters, times, flags, interface, VLAN, end reason
DEFAULT_FIELDS = (
    "sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address", "destinationIPv6Address",
    "sourceTransportPort", "destinationTransportPort", "protocolIdentifier", "ipClassOfService",
    "tcpControlBits", "icmpTypeCodeIPv4", "icmpTypeCodeIPv6", "packetDeltaCount",
    "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds", "ingressInterface",
    "vlanId", "flowEndReason",
)
REVERSE_FIELDS = (
    "reversePacketDeltaCount", "reverseOctetDeltaCount", "reverseFlowStartMilliseconds",
    "reverseFlowEndMilliseconds", "reverseTcpControlBits",
)

# what the conntrack source adds to the standard record
NAT_FIELDS = (
    "postNATSourceIPv4Address", "postNATDestinationIPv4Address", "postNATSourceIPv6Address",
    "postNATDestinationIPv6Address", "postNAPTSourceTransportPort",
    "postNAPTDestinationTransportPort", "flowId",
)


# fields that make the meter keep each flow's first MAC addresses
MAC_FIELDS = ("sourceMacAddress", "destinationMacAddress")


# Layer-2 flows (option l2_flows) have a template of their own, keyed by
# MACs and EtherType; of a profile's other fields it carries those that mean
# something without IP (counters, times, interface, VLANs, end reason).  Its
# octetDeltaCount counts whole frames (link header included, no FCS): a
# layer-2 flow has no IP length.  A profile gets it by naming ethernetType.
LAYER2_FIELDS = ("sourceMacAddress", "destinationMacAddress", "ethernetType", "vlanId",
                 "dot1qCustomerVlanId")   # the key: always there (v9 has no inner VLAN)
LAYER2_CARRIED = LAYER2_FIELDS + (
    "octetDeltaCount", "packetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds",
    "ingressInterface", "egressInterface", "flowDirection", "flowEndReason") + REVERSE_FIELDS


def layer2_elements(names):
    """The layer-2 template's elements: the MACs and EtherType first, then
    what the profile asks for that a layer-2 flow has."""
    rest = [n for n in names if n in LAYER2_CARRIED and n not in LAYER2_FIELDS]
    return [ELEMENTS[n] for n in LAYER2_FIELDS + tuple(rest)]


def with_layer2_fields(configured, profiles):
    """IPFIX and v9 collectors configured without their own field list also
    get the layer-2 template (ethernetType) when interfaces meter layer-2
    flows; v5 cannot carry them (counted as not exportable)."""
    return [profile if own.fields or profile.protocol not in ("ipfix", "netflow9")
            or "ethernetType" in profile.field_names
            else replace(profile, fields=profile.field_names + ("ethernetType",))
            for own, profile in zip(configured, profiles)]


def is_reverse(name):
    return ELEMENTS[name].enterprise == REVERSE_PEN


def family_elements(names, family):
    """The elements of a field list that belong in one address family's template."""
    return [ELEMENTS[n] for n in names if ELEMENTS[n].family in (0, family)
            and ELEMENTS[n].family != LAYER2]


def with_nat_fields(profiles):
    """Collectors without their own field list get the standard record plus
    the NAT fields and flowId their protocol can carry (v5: none)."""
    adjusted = []
    for profile in profiles:
        if profile.fields or profile.protocol == "netflow5":
            adjusted.append(profile)
            continue
        names = profile.field_names + tuple(
            n for n in NAT_FIELDS
            if profile.protocol == "ipfix" or ELEMENTS[n].v9_id is not None)
        adjusted.append(replace(profile, fields=names))
    return adjusted


def with_segment_field(configured, profiles):
    """IPFIX collectors configured without their own field list also get
    layer2SegmentId when interfaces meter tunnels' inner flows: two tenants'
    identical 5-tuples must stay apart at the collector too.  configured:
    the profiles as the config has them; profiles: as adjusted so far."""
    return [profile if own.fields or profile.protocol != "ipfix"
            or "layer2SegmentId" in profile.field_names
            else replace(profile, fields=profile.field_names + ("layer2SegmentId",))
            for own, profile in zip(configured, profiles)]
