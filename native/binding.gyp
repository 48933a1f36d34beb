# Podwire's Node-API addon: netlink sockets opened inside a network namespace, batched
# netlink I/O, sysctls in a namespace, flock, the DNS server's batched UDP socket, and fd passing to the DNS socket keeper. Built by scripts/build-native.js, which
# the root package's `install` script runs (so `npm ci` builds it). Headers come from the
# Node installation (npm config nodedir=/usr); nothing is downloaded.
{
  "targets": [
    {
      "target_name": "podwire_native",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/netns_thread.cc",
        "src/netlink_socket.cc",
        "src/netlink_io.cc",
        "src/sysctl.cc",
        "src/flock.cc",
        "src/nstype.cc",
        "src/udp_batch.cc",
        "src/fd_pass.cc",
        "src/bound_socket.cc",
        "src/ethtool.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "libraries": ["-lpthread"]
    }
  ]
}
