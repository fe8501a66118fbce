# The package set of this environment: nixpkgs pinned by content, so every
# machine evaluates the same packages. Change both url and sha256 together
# (`nix-prefetch-url --unpack URL` prints the sha256).
import (builtins.fetchTarball {
  url = "https://github.com/NixOS/nixpkgs/archive/refs/tags/24.11.tar.gz";
  sha256 = "1gx0hihb7kcddv5h0k7dysp2xhf1ny0aalxhjbpj2lmvj7h9g80a";
}) { }
