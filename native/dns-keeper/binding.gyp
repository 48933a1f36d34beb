{
  # Not an addon: the DNS socket keeper, a small executable (docs/dns.md, "Restarts and crashes").
  # Built by scripts/build-native.js at `npm ci` like every native/*/binding.gyp.
  "targets": [
    {
      "target_name": "podwire-dns-keeper",
      "type": "executable",
      "sources": ["keeper.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["-static"]
    }
  ]
}
