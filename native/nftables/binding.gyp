# Podwire's libnftables addon: nft transactions in-process, inside a network namespace.
# A separate addon from native/ (podwire_native) on purpose: it links libnftables.so.1
# normally (Debian 12: libnftables-dev 1.0.6), and if that library is missing at run
# time only this addon fails to load; Podwire then falls back to `nft -f -` while the
# netlink/sysctl/flock addon keeps working. Built by scripts/build-native.js with the rest.
{
  "targets": [
    {
      "target_name": "podwire_nftables",
      "sources": [
        "src/nftables.cc",
        "../src/errors.cc",
        "../src/netns_thread.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../src"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "libraries": ["-lnftables", "-lpthread"]
    }
  ]
}
