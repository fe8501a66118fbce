# nixdocker's entry point: evaluates a project's predefined environment and
# user files (the contract in README.md) into the packages of one image.
#
#   root      absolute path of the project copy (a string, turned into a path)
#   manifest  JSON: { envDir, userConfig: [files] }, all relative to root
#
# The result is plain data so that `nix-instantiate --eval --json` can hand it
# to nixdocker: base and user packages with their .drv and out paths, kept
# apart so that the image layers of the base never depend on the user files,
# and the Nix system they are built for.
{ root, manifest }:
let
  m = builtins.fromJSON manifest;
  rootPath = /. + root;
  envDir = rootPath + "/${m.envDir}";
  pkgsFile = envDir + "/pkgs.nix";
  pkgsValue = if builtins.pathExists pkgsFile then import pkgsFile else import <nixpkgs> { };
  pkgs = if builtins.isFunction pkgsValue then pkgsValue { } else pkgsValue;

  # A file is a list of derivations, or a function { pkgs, ... }: [ ... ].
  load = rel:
    let
      value = import (rootPath + "/${rel}");
      list = if builtins.isFunction value then value { inherit pkgs; } else value;
    in
    if builtins.isList list then map (check rel) list
    else throw "nixdocker: ${rel} must evaluate to a list of derivations, or to a function { pkgs, ... }: [ derivations ]; it evaluates to a ${builtins.typeOf list}";

  check = rel: d:
    # Not outPath/drvPath as keys: toJSON would turn a set with outPath into a string.
    if builtins.isAttrs d && (d.type or null) == "derivation" then {
      name = d.name;
      drv = d.drvPath;
      out = d.outPath;
      source = rel;
    }
    else throw "nixdocker: ${rel} lists a ${builtins.typeOf d} where a derivation is expected";

  imageFile = envDir + "/image.nix";
  image = if builtins.pathExists imageFile then import imageFile else { };
in
{
  # What this Nix builds for: the image's platform comes from here, not from the client.
  system = builtins.currentSystem;
  base = load "${m.envDir}/default.nix";
  user = builtins.concatMap load m.userConfig;
  image =
    if builtins.isAttrs image then image
    else throw "nixdocker: ${m.envDir}/image.nix must be an attribute set like { cmd = [ \"python3\" ]; }";
}
