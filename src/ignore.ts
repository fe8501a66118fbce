/**
 * Files that are never inputs: editor swap, backup and atomic-save temporaries,
 * VCS and dependency folders, and nix-build's `result` links. One list, shared
 * by the identity hash and the watcher, so what is watched is what is hashed.
 */
const IGNORED_FILE = [
  /^\..*\.sw[a-p]$/, // vim swap (.file.swp)
  /\.sw[a-p]x?$/,
  /~$/, // vim/emacs backups
  /^\.#/, // emacs lock files
  /^#.*#$/, // emacs auto-save
  /^4913$/, // vim's write test file
  /\.(?:bak|orig|rej|tmp)$/,
  /___jb_(?:tmp|old|bak)___$/, // JetBrains safe-write
  /^\.(?:DS_Store|directory)$/,
  /^Thumbs\.db$/,
  /^\.goutputstream-/, // GLib atomic replace
  /^\.~lock\./, // LibreOffice
  /^\.nfs[0-9a-f]+$/i,
  /^result(?:-[\w.-]+)?$/, // nix-build out links
];

const IGNORED_DIR = new Set(['.git', '.hg', '.svn', 'node_modules', '.direnv', '.nixdocker', '.cache', '__pycache__']);

/** True when a file with this base name is never an input. */
export function isIgnoredFile(base: string): boolean {
  return IGNORED_FILE.some((re) => re.test(base));
}

/** True when a directory with this base name is never descended into. */
export function isIgnoredDir(base: string): boolean {
  return IGNORED_DIR.has(base);
}
