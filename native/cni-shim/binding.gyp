{
  # Not an addon: a small executable (the CNI plugin binary). Built by
  # scripts/build-native.js at `npm ci` like every native/*/binding.gyp.
  "targets": [
    {
      "target_name": "podwire-cni-shim",
      "type": "executable",
      "sources": ["shim.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-format-truncation"],
      # Static: no dynamic loader at every pod start (~0.6 ms of the fast path here).
      "ldflags": ["-static"],
      "defines": [
        "PODWIRE_NODE_DEFAULT=\"<!(node -p process.execPath)\"",
        "PODWIRE_PKG_ROOT=\"<!(node -p \"require('path').resolve('../..')\")\""
      ]
    }
  ]
}
