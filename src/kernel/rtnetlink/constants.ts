/**
 * rtnetlink numbers from the Linux UAPI headers (linux/netlink.h, linux/rtnetlink.h,
 * linux/if_link.h, linux/neighbour.h, linux/if_bridge.h). Only the ones Podwire uses.
 */
export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
/** Ask the kernel to send the resulting object back (RTM_NEWLINK: honoured since Linux 6.3). */
export const NLM_F_ECHO = 0x8;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;

/** nla_type bit: the payload is itself a list of attributes. */
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = 0x3fff;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;

// struct ifinfomsg flags
export const IFF_UP = 0x1;
export const IFF_PROMISC = 0x100;

// IFLA_*
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_PROTINFO = 12;
export const IFLA_LINKINFO = 18;
export const IFLA_NET_NS_FD = 28;
export const IFLA_PROMISCUITY = 30;

// IFLA_INFO_*
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;

// veth
export const VETH_INFO_PEER = 1;

// IFLA_VXLAN_*
export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_TTL = 5;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PORT_RANGE = 10;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_LOCAL6 = 17;
export const IFLA_VXLAN_GBP = 23;

// IFLA_BRPORT_* (inside IFLA_PROTINFO for AF_BRIDGE)
export const IFLA_BRPORT_MODE = 4; // hairpin
export const IFLA_BRPORT_LEARNING = 8;

// IFA_*
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;

// RTA_*
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_METRICS = 8;
export const RTA_TABLE = 15;
export const RTAX_MTU = 2;

export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RTPROT_BOOT = 3;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;
export const RTN_UNSPEC = 0;
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
export const RTN_BLACKHOLE = 6;
export const RTN_UNREACHABLE = 7;
/** RTNH_F_ONLINK: the npm netlink schema has no name for it in rtm_flags. */
export const RTNH_F_ONLINK = 4;
export const RTM_F_CLONED = 0x200;

// NDA_*, NUD_*, NTF_*
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NUD_REACHABLE = 0x02;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;
export const NTF_MASTER = 0x04;
