# A tiny package set that needs no nixpkgs and no network: every derivation is
# built with the static busybox of the builder (Debian's busybox-static at
# /bin/busybox). It stands in for nixpkgs on machines without internet, and is
# what nixdocker's own tests and benchmarks build.
let
  system = builtins.currentSystem;
  bb = "/bin/busybox";

  # busybox itself, copied into the store, with links for its applets.
  busybox = derivation {
    name = "busybox";
    inherit system;
    builder = bb;
    args = [ "sh" "-c" ''
      ${bb} mkdir -p $out/bin
      ${bb} cp ${bb} $out/bin/busybox
      cd $out/bin
      for a in sh ash cat cp echo env grep head ls mkdir rm sed sleep sort tr uname wc yes id; do
        ${bb} ln -s busybox $a
      done
    '' ];
  };

  # An executable script in $out/bin/NAME that runs with the busybox above.
  # The text reaches the builder as an environment variable, so no quoting can break it.
  writeScriptBin = name: text: derivation {
    inherit name system text;
    builder = bb;
    args = [ "sh" "-c" ''
      ${bb} mkdir -p $out/bin
      ${bb} printf '%s\n' '#!${busybox}/bin/sh' "$text" > $out/bin/${name}
      ${bb} chmod 555 $out/bin/${name}
    '' ];
  };

  # A package holding SIZE bytes of data, for images of a realistic size.
  dataPackage = name: size: derivation {
    inherit name system;
    builder = bb;
    args = [ "sh" "-c" ''
      ${bb} mkdir -p $out/share/${name}
      ${bb} yes ${name} | ${bb} head -c ${toString size} > $out/share/${name}/data
    '' ];
  };
  # SIZE bytes that do not compress, like real binaries (the content is random,
  # so two stores hold different bytes under the same path: fine for tests).
  noisePackage = name: size: derivation {
    inherit name system;
    builder = bb;
    args = [ "sh" "-c" ''
      ${bb} mkdir -p $out/share/${name}
      ${bb} head -c ${toString size} /dev/urandom > $out/share/${name}/data
    '' ];
  };
in
{
  inherit busybox writeScriptBin dataPackage noisePackage;
  hello = writeScriptBin "hello" ''echo "Hello from a nixdocker image ($(uname -m))"'';
  greet = writeScriptBin "greet" ''echo "greetings, $1"'';
  data = dataPackage "data" 4000000;
}
