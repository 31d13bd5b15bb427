/**
 * The B+ tree class of the `sorted-btree` package, loaded the same way under Node and under
 * the test runner.
 *
 * The package is CommonJS with `exports.default = BTree`. Node's ESM loader hands a default
 * import the whole `module.exports` object (the class is its `.default`), while bundler-style
 * interop (vitest) honours `__esModule` and hands over the class itself. This module accepts
 * both, so every other file just imports {@link BTree} from here.
 */
import sortedBtree from "sorted-btree"

type BTreeClass = typeof sortedBtree.default

const loaded = sortedBtree as unknown as BTreeClass | { readonly default: BTreeClass }

/** The sorted-btree constructor: `new BTree<K, V>(entries?, compare?, maxNodeSize?)`. */
export const BTree: BTreeClass = typeof loaded === "function" ? loaded : loaded.default

/** An instance type of {@link BTree}. */
export type BTreeOf<K, V> = InstanceType<typeof BTree<K, V>>
