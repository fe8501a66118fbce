# Your own packages on top of env/. Uncomment a line and save while
# `nixdocker watch` runs to get a new image.
{ pkgs, ... }:
[
  pkgs.greet
  # (pkgs.writeScriptBin "shout" ''echo "$@" | tr a-z A-Z'')
]
