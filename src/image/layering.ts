import { createHash } from 'node:crypto';
import type { BuildResult, StorePathInfo } from '../nix/types.js';
import { UserError } from '../errors.js';

/** One store layer: which store paths it holds. */
export interface LayerPlan {
  /** Store paths, sorted. */
  paths: string[];
  /** `base`: closure of envDir/default.nix; `user`: what the user files add on top of it. */
  kind: 'base' | 'user';
}

/** A path whose NAR is larger than this gets a layer of its own. */
export const LARGE_PATH = 50 * 1024 * 1024;
/** Groups smaller than this never take a layer of their own; they are pooled in one layer. */
export const TINY_PATH = 64 * 1024;
/** Share of the store layer budget the base may use; the user side gets the rest. */
export const BASE_SHARE = 0.7;
/** A group that this many paths of its side reach is shared: it keeps a layer of its own past the budget. */
export const POPULAR = 2;
/** Past the budget, shared and large groups keep their own layers in at most this share of a side's budget. */
export const OWN_SHARE = 1 / 3;
/** Chunk layers aim at no less than this; smaller pools stay one layer. */
export const MIN_CHUNK = 256 * 1024;

/**
 * Splits the closure of a build into store layers, at most `maxLayers - 1`
 * of them (one layer stays for the customisation layer). Base layers come
 * first, then user layers; within each, the most popular first. The base
 * plans depend only on the base closure and `maxLayers`. See docs/layering.md.
 */
export function planLayers(result: BuildResult, maxLayers: number): LayerPlan[] {
  const storeBudget = maxLayers - 1;
  const baseClosure = closureOf(result.closure, result.base.map((p) => p.outPath));
  const userClosure = closureOf(result.closure, result.user.map((p) => p.outPath));
  const userOnly = new Set([...userClosure].filter((p) => !baseClosure.has(p)));

  const needed = (baseClosure.size > 0 ? 1 : 0) + (userOnly.size > 0 ? 1 : 0);
  if (storeBudget < needed) {
    throw new UserError(
      `image.maxLayers is ${maxLayers}, but this image needs at least ${needed + 1} layers (base, user and customisation)`,
      'set image.maxLayers to 3 or more',
    );
  }
  // Fixed by maxLayers alone: if the base could take what the user side leaves
  // unused, adding a user package would re-split the base.
  const baseBudget = Math.min(storeBudget - 1, Math.max(1, Math.floor(storeBudget * BASE_SHARE)));

  const base = planSide(result.closure, baseClosure, result.base.map((p) => p.outPath), Math.max(1, baseBudget));
  const user = planSide(result.closure, userOnly, result.user.map((p) => p.outPath), storeBudget - base.length);
  return [
    ...base.map((paths) => ({ paths, kind: 'base' as const })),
    ...user.map((paths) => ({ paths, kind: 'user' as const })),
  ];
}

/** Every path reachable from `roots` through references. */
export function closureOf(closure: Record<string, StorePathInfo>, roots: readonly string[]): Set<string> {
  const seen = new Set<string>();
  const stack = [...roots];
  while (stack.length > 0) {
    const p = stack.pop()!;
    if (seen.has(p)) continue;
    const info = closure[p];
    if (!info) throw new Error(`store path ${p} is referenced but missing from the build's closure`);
    seen.add(p);
    for (const r of info.references) if (!seen.has(r)) stack.push(r);
  }
  return seen;
}

interface Group {
  members: number[];
  size: number;
  /** Lowest popularity of a member: that of the group's head. */
  popularity: number;
  /** First member path, the last tie-breaker. */
  first: string;
  /** The path that brings the others in (the dominator-tree child of the root). */
  head: string;
}

/**
 * The layers of one side: `nodes` is the side's path set, `tops` its packages
 * (only those inside `nodes` count), `budget` the most layers it may use.
 */
function planSide(closure: Record<string, StorePathInfo>, nodes: Set<string>, tops: readonly string[], budget: number): string[][] {
  if (nodes.size === 0) return [];
  const g = buildGraph(closure, nodes);
  const popularity = popularityOf(g);
  const { paths, size } = g;
  const n = paths.length;

  const anchors = new Uint8Array(n);
  for (const t of tops) {
    const i = g.index.get(t);
    if (i !== undefined) anchors[i] = 1;
  }
  for (let i = 0; i < n; i++) if (size[i]! > LARGE_PATH) anchors[i] = 1;
  // Paths that may be promoted to a layer of their own while the budget allows, most popular first.
  const candidates = [...Array(n).keys()]
    .filter((i) => !anchors[i] && size[i]! >= TINY_PATH)
    .sort((a, b) => popularity[b]! - popularity[a]! || size[b]! - size[a]! || cmp(paths[a]!, paths[b]!));

  let idom = dominators(g, anchors);
  let groups = groupsOf(g, idom, popularity);
  for (const c of candidates) {
    if (layersWanted(groups, budget) >= budget) break;
    if (idom[c] === ROOT) continue; // already heads a group
    anchors[c] = 1;
    idom = dominators(g, anchors);
    groups = groupsOf(g, idom, popularity);
  }

  const big = groups.filter((grp) => grp.size >= TINY_PATH);
  const tiny = groups.filter((grp) => grp.size < TINY_PATH);
  let own: Group[];
  let rest: Group[];
  if (big.length + (tiny.length > 0 ? 1 : 0) <= budget) {
    own = big;
    rest = tiny;
  } else {
    // Over budget (more packages and large paths than layers): large paths and
    // shared groups keep their own layers, within OWN_SHARE of the budget; the
    // rest is cut into chunk layers by content (see chunkGroups).
    const keep = big
      .filter((grp) => isLarge(grp) || grp.popularity >= POPULAR)
      .sort((a, b) => Number(isLarge(b)) - Number(isLarge(a)) || (isLarge(a) ? b.size - a.size : 0) || byOrder(a, b))
      .slice(0, Math.floor(budget * OWN_SHARE));
    const kept = new Set(keep);
    own = keep;
    rest = groups.filter((grp) => !kept.has(grp));
  }
  const chunks = chunkGroups(rest, budget - own.length).map((part) => merge(part, paths));
  const layers = [...own, ...chunks].sort(byOrder);
  return layers.map((grp) => grp.members.map((i) => paths[i]!).sort(cmp));
}

/**
 * Layers a side would use with its groups as they are: one per group that is
 * not tiny, plus what the tiny ones need in chunk layers of MIN_CHUNK (at
 * most a third of the budget), so the budget filling leaves them room.
 */
function layersWanted(groups: Group[], budget: number): number {
  let big = 0;
  let tinyBytes = 0;
  for (const grp of groups) {
    if (grp.size >= TINY_PATH) big++;
    else tinyBytes += grp.size;
  }
  const pool = tinyBytes === 0 ? 0 : Math.max(1, Math.min(Math.floor(budget / 3), Math.ceil(tinyBytes / (2 * MIN_CHUNK))));
  return big + pool;
}

/**
 * Content-defined chunking of groups into at most `budget` layers, so that a
 * changed or added group changes about one layer, not one merged "rest".
 * Groups are walked by the name of their head without its hash (a rebuilt
 * package keeps its place), and a chunk ends after a group whose name hashes
 * below size/target, once the chunk holds target/2; it ends before a group
 * that would take it past 2 × target. The target is T/budget rounded up to a
 * step of 2^(1/4), at least MIN_CHUNK, so a small change of T rarely moves
 * it; should the cut still give more chunks than the budget, the target
 * steps up until it does not. See docs/layering.md.
 */
export function chunkGroups<G extends { size: number; head: string }>(groups: readonly G[], budget: number): G[][] {
  if (groups.length === 0) return [];
  if (budget < 1) throw new Error('chunkGroups needs a budget of one layer or more');
  const units = groups
    .map((grp) => ({ grp, key: nameKey(grp.head), cut: cutHash(grp.head) }))
    .sort((a, b) => cmp(a.key, b.key));
  const total = units.reduce((sum, u) => sum + u.grp.size, 0);
  let step = Math.ceil(4 * Math.log2(Math.max(MIN_CHUNK, total / budget)));
  for (;;) {
    const target = 2 ** (step / 4);
    const chunks: G[][] = [];
    let cur: G[] = [];
    let bytes = 0;
    for (const u of units) {
      if (cur.length > 0 && bytes + u.grp.size > 2 * target) {
        chunks.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(u.grp);
      bytes += u.grp.size;
      if (bytes >= target / 2 && u.cut < u.grp.size / target) {
        chunks.push(cur);
        cur = [];
        bytes = 0;
      }
    }
    if (cur.length > 0) chunks.push(cur);
    if (chunks.length <= budget) return chunks;
    step++;
  }
}

/** `NAME` of `/nix/store/HASH-NAME`, then the whole path: the walk order of chunkGroups. */
function nameKey(p: string): string {
  const base = p.slice(p.lastIndexOf('/') + 1);
  return `${base.slice(base.indexOf('-') + 1)}\0${p}`;
}

/** A number in [0, 1) from the path's name without its hash, so a rebuilt package cuts where it did. */
function cutHash(p: string): number {
  const base = p.slice(p.lastIndexOf('/') + 1);
  return createHash('sha256').update(base.slice(base.indexOf('-') + 1)).digest().readUInt32BE(0) / 2 ** 32;
}

/** Image order: most popular first (shared layers early in the chain), then larger, then by path. */
const byOrder = (a: Group, b: Group) => b.popularity - a.popularity || b.size - a.size || cmp(a.first, b.first);
const isLarge = (grp: Group) => grp.members.length === 1 && grp.size > LARGE_PATH;

interface Graph {
  /** Sorted store paths; everything else is indexed like this. */
  paths: string[];
  index: Map<string, number>;
  size: number[];
  /** Direct references inside the side, self-references dropped. */
  refs: number[][];
  referrers: number[][];
  /** Referrers before the paths they refer to. */
  topo: number[];
}

function buildGraph(closure: Record<string, StorePathInfo>, nodes: Set<string>): Graph {
  const paths = [...nodes].sort(cmp);
  const index = new Map(paths.map((p, i) => [p, i]));
  const refs = paths.map((p, i) => [...new Set(closure[p]!.references.map((r) => index.get(r)).filter((r): r is number => r !== undefined && r !== i))].sort((a, b) => a - b));
  const referrers: number[][] = paths.map(() => []);
  refs.forEach((rs, i) => rs.forEach((r) => referrers[r]!.push(i)));

  // Kahn's algorithm; Nix forbids reference cycles, so every path gets placed.
  const indegree = referrers.map((r) => r.length);
  const topo: number[] = [];
  for (let i = 0; i < paths.length; i++) if (indegree[i] === 0) topo.push(i);
  for (let k = 0; k < topo.length; k++) {
    for (const r of refs[topo[k]!]!) if (--indegree[r]! === 0) topo.push(r);
  }
  if (topo.length !== paths.length) throw new Error('the closure has a reference cycle between store paths');
  return { paths, index, size: paths.map((p) => closure[p]!.narSize), refs, referrers, topo };
}

/** How many paths of the side reach each path through references. */
function popularityOf(g: Graph): number[] {
  const n = g.paths.length;
  const words = (n + 31) >>> 5;
  const reach = new Uint32Array(n * words); // row i: the paths that reach i
  const pop = new Array<number>(n).fill(0);
  for (const i of g.topo) {
    const row = i * words;
    for (const r of g.referrers[i]!) {
      const src = r * words;
      for (let w = 0; w < words; w++) reach[row + w]! |= reach[src + w]!;
      reach[row + (r >>> 5)]! |= 1 << (r & 31);
    }
    let count = 0;
    for (let w = 0; w < words; w++) count += popcount(reach[row + w]!);
    pop[i] = count;
  }
  return pop;
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

const ROOT = -1;

/**
 * Immediate dominators from a virtual root with an edge to every anchor (and
 * to any path nothing refers to). The graph is acyclic, so one pass in
 * topological order suffices: a path's dominator is the nearest common
 * dominator-tree ancestor of its referrers.
 */
function dominators(g: Graph, anchors: Uint8Array): Int32Array {
  const n = g.paths.length;
  const idom = new Int32Array(n);
  const depth = new Int32Array(n);
  const depthOf = (v: number) => (v === ROOT ? 0 : depth[v]!);
  const intersect = (a: number, b: number) => {
    while (a !== b) {
      const da = depthOf(a);
      const db = depthOf(b);
      if (da >= db) a = idom[a]!;
      if (db >= da) b = idom[b]!;
    }
    return a;
  };
  for (const v of g.topo) {
    let d: number | undefined = anchors[v] || g.referrers[v]!.length === 0 ? ROOT : undefined;
    for (const r of g.referrers[v]!) {
      d = d === undefined ? r : intersect(d, r);
      if (d === ROOT) break;
    }
    idom[v] = d!;
    depth[v] = depthOf(d!) + 1;
  }
  return idom;
}

/**



 */
function groupsOf(g: Graph, idom: Int32Array, popularity: number[]): Group[] {
  const n = g.paths.length;
  const head = new Int32Array(n);
  const byHead = new Map<number, number[]>();
  const large: number[] = [];
  for (const v of g.topo) {
    const d = idom[v]!;
    head[v] = d === ROOT ? v : head[d]!;
    if (g.size[v]! > LARGE_PATH) large.push(v);
    else {
      const h = head[v]!;
      const list = byHead.get(h);
      if (list) list.push(v);
      else byHead.set(h, [v]);
    }
  }
  const make = (members: number[], h: number): Group => {
    members.sort((a, b) => a - b); // index order is path order
    let size = 0;
    let pop = Infinity;
    for (const m of members) {
      size += g.size[m]!;
      pop = Math.min(pop, popularity[m]!);
    }
    return { members, size, popularity: pop, first: g.paths[members[0]!]!, head: g.paths[h]! };
  };
  return [...large.map((v) => make([v], v)), ...[...byHead].map(([h, members]) => make(members, h))];
}

function merge(groups: Group[], paths: string[]): Group {
  if (groups.length === 1) return groups[0]!;
  const members = groups.flatMap((grp) => grp.members).sort((a, b) => a - b);
  return {
    head: paths[members[0]!]!,
    members,
    size: groups.reduce((s, grp) => s + grp.size, 0),
    popularity: Math.min(...groups.map((grp) => grp.popularity)),
    first: paths[members[0]!]!,
  };
}

/** Code-unit order, independent of locale; store paths are ASCII, so this is byte order. */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
