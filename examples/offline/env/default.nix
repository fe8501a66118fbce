# The predefined environment of the offline example: busybox, a hello script
# and a package of data. Its closure forms the base layers.
{ pkgs, ... }:
[
  pkgs.busybox
  pkgs.hello
  pkgs.data
]
