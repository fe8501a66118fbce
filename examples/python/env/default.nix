# The predefined environment: a list of derivations, or a function of pkgs
# (env/pkgs.nix) that returns one. Its closure forms the image's base layers.
{ pkgs, ... }:
[
  (pkgs.python3.withPackages (ps: [ ps.requests ps.numpy ]))
  pkgs.bashInteractive
  pkgs.coreutils
  pkgs.cacert
]
