# Your own packages, added on top of the environment in env/.
# Saving this file while `nixdocker watch` runs builds a new image.
{ pkgs, ... }:
[
  # pkgs.git
  # pkgs.jq
  # (pkgs.python3.withPackages (ps: [ ps.pandas ]))
]
