/**
 * A small seeded pseudo-random generator for the simulator (xoshiro128**, seeded through
 * splitmix32 so that nearby seeds give unrelated streams). Every random choice of a simulation
 * run comes from one instance, so a seed reproduces the run exactly.
 */

const splitmix32 = (state: { s: number }): number => {
  state.s = (state.s + 0x9e3779b9) | 0
  let z = state.s
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k))

/** xoshiro128** over four 32-bit words. */
export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    const st = { s: seed | 0 }
    this.a = splitmix32(st)
    this.b = splitmix32(st)
    this.c = splitmix32(st)
    this.d = splitmix32(st)
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0
    const t = this.b << 9
    this.c ^= this.a
    this.d ^= this.b
    this.b ^= this.c
    this.a ^= this.d
    this.c ^= t
    this.d = rotl(this.d, 11)
    return result
  }

  /** An integer in [0, maxExclusive); 0 when maxExclusive <= 0. */
  int(maxExclusive: number): number {
    if (maxExclusive <= 0) return 0
    return Math.floor((this.nextU32() / 0x1_0000_0000) * maxExclusive)
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.nextU32() / 0x1_0000_0000 < p
  }

  /** A uniformly chosen element; throws on an empty array. */
  pick<T>(xs: ReadonlyArray<T>): T {
    if (xs.length === 0) throw new Error("pick from empty array")
    return xs[this.int(xs.length)]!
  }

  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(xs: ReadonlyArray<T>): T[] {
    const out = [...xs]
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const tmp = out[i]!
      out[i] = out[j]!
      out[j] = tmp
    }
    return out
  }
}
