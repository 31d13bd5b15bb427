/**
 * The auth store (services/mvcc/core/auth-store.ts) and the apply-time checks
 * (services/mvcc/auth-apply.ts authorizeWrite) as tables, against etcd 3.4's behaviour
 * (auth/store.go, auth/range_perm_cache.go, etcdserver/apply_auth.go): the auth revision after
 * each request as etcd 3.4 moves it (observed on etcd's etcd_debugging_auth_revision), every
 * error of each request, permission intervals (single key, range, prefix, from-key, unions with
 * and without gaps), and the store read back from the backend after a restart.
 */
import { describe, expect, it } from "vitest"
import type { AuthInfo, AuthRequest, Permission, PermissionType } from "../../shared/auth.ts"
import { LeaseId } from "../../shared/ids.ts"
import type { LeaseWriteRequest, WriteRequest } from "../../shared/kv.ts"
import { authorizeWrite } from "../../services/mvcc/auth-apply.ts"
import { AuthStore, coversRange } from "../../services/mvcc/core/auth-store.ts"
import { MemoryBackend } from "../../services/mvcc/core/backend-memory.ts"

const enc = (s: string) => new TextEncoder().encode(s)
const root: AuthInfo = { username: "root", revision: Number.MAX_SAFE_INTEGER }

const setup = () => {
  let backend = new MemoryBackend()
  let store = AuthStore.restore(backend)
  const apply = (req: AuthRequest, info: AuthInfo | undefined = root) => {
    const r = store.apply(backend, info, req)
    return "err" in r ? r.err.code : "ok"
  }
  const reopen = () => {
    backend = backend.clone()
    store = AuthStore.restore(backend)
  }
  return { apply, reopen, store: () => store }
}

const perm = (permType: PermissionType, key: string, rangeEnd = ""): Permission => ({
  permType,
  key: enc(key),
  rangeEnd: rangeEnd === "\0" ? new Uint8Array([0]) : enc(rangeEnd)
})

describe("auth store: requests, errors and the auth revision (etcd 3.4)", () => {
  it("moves the revision as etcd 3.4 does, and answers each error", () => {
    const { apply, store } = setup()
    const rev = () => store().authRevision()
    // The sequence measured on etcd 3.4.23: 1 → 2 (user add root) → 3 (role add root) → 4
    // (grant root) → 4 (grant again) → 5 (role add r1) → 5 (auth enable) → 6, 7, 8 (grant,
    // identical grant, changed grant) → 8 (revoke of an absent permission fails) → 9 (revoke).
    const steps: ReadonlyArray<readonly [AuthRequest, string, number]> = [
      [{ authEnable: {} }, "RootUserNotExist", 1],
      [{ userAdd: { name: "root", hashedPassword: "h", noPassword: false } }, "ok", 2],
      [{ authEnable: {} }, "RootRoleNotExist", 2],
      [{ roleAdd: { name: "root" } }, "ok", 3],
      [{ userGrantRole: { user: "root", role: "root" } }, "ok", 4],
      [{ userGrantRole: { user: "root", role: "root" } }, "ok", 4],
      [{ roleAdd: { name: "r1" } }, "ok", 5],
      [{ roleAdd: { name: "r1" } }, "RoleAlreadyExist", 5],
      [{ roleAdd: { name: "" } }, "RoleEmpty", 5],
      [{ authEnable: {} }, "ok", 5],
      [{ roleGrantPermission: { name: "r1", perm: perm("READ", "a") } }, "ok", 6],
      [{ roleGrantPermission: { name: "r1", perm: perm("READ", "a") } }, "ok", 7],
      [{ roleGrantPermission: { name: "r1", perm: perm("WRITE", "a") } }, "ok", 8],
      [{ roleGrantPermission: { name: "nope", perm: perm("WRITE", "a") } }, "RoleNotFound", 8],
      [{ roleRevokePermission: { role: "r1", key: enc("b"), rangeEnd: new Uint8Array() } }, "PermissionNotGranted", 8],
      [{ roleRevokePermission: { role: "r1", key: enc("a"), rangeEnd: new Uint8Array() } }, "ok", 9],
      [{ userAdd: { name: "u1", hashedPassword: "h", noPassword: false } }, "ok", 10],
      [{ userAdd: { name: "u1", hashedPassword: "h", noPassword: false } }, "UserAlreadyExist", 10],
      [{ userAdd: { name: "", hashedPassword: "h", noPassword: false } }, "UserEmpty", 10],
      [{ userGrantRole: { user: "u1", role: "missing" } }, "RoleNotFound", 10],
      [{ userGrantRole: { user: "nobody", role: "r1" } }, "UserNotFound", 10],
      [{ userGrantRole: { user: "u1", role: "r1" } }, "ok", 11],
      [{ userRevokeRole: { name: "u1", role: "root" } }, "RoleNotGranted", 11],
      [{ userChangePassword: { name: "u1", hashedPassword: "h2" } }, "ok", 12],
      [{ userChangePassword: { name: "nobody", hashedPassword: "h2" } }, "UserNotFound", 12],
      [{ userDelete: { name: "root" } }, "InvalidAuthMgmt", 12],
      [{ roleDelete: { role: "root" } }, "InvalidAuthMgmt", 12],
      [{ userRevokeRole: { name: "root", role: "root" } }, "InvalidAuthMgmt", 12],
      [{ roleDelete: { role: "r1" } }, "ok", 13],
      [{ userDelete: { name: "u1" } }, "ok", 14],
      [{ userDelete: { name: "u1" } }, "UserNotFound", 14],
      [{ userList: {} }, "ok", 14],
      [{ authDisable: {} }, "ok", 15],
      [{ authDisable: {} }, "ok", 15],
      [{ authenticate: { name: "root", simpleToken: "x" } }, "AuthNotEnabled", 15]
    ]
    for (const [req, want, revision] of steps) {
      expect([Object.keys(req)[0], apply(req)]).toEqual([Object.keys(req)[0], want])
      expect([Object.keys(req)[0], rev()]).toEqual([Object.keys(req)[0], revision])
    }
  })

  it("lets only root manage auth while enabled, a user read itself and the roles it has", () => {
    const { apply, store } = setup()
    apply({ userAdd: { name: "root", hashedPassword: "h", noPassword: false } })
    apply({ userGrantRole: { user: "root", role: "root" } })
    apply({ userAdd: { name: "alice", hashedPassword: "h", noPassword: false } })
    apply({ roleAdd: { name: "reader" } })
    apply({ roleAdd: { name: "writer" } })
    apply({ userGrantRole: { user: "alice", role: "reader" } })
    expect(apply({ authEnable: {} })).toBe("ok")
    const alice: AuthInfo = { username: "alice", revision: store().authRevision() }
    const nobody: AuthInfo = { username: "", revision: 0 }
    const ghost: AuthInfo = { username: "ghost", revision: store().authRevision() }
    expect(apply({ userList: {} }, alice)).toBe("PermissionDenied")
    expect(apply({ roleAdd: { name: "x" } }, nobody)).toBe("UserEmpty")
    expect(apply({ roleAdd: { name: "x" } }, ghost)).toBe("UserNotFound")
    expect(apply({ userChangePassword: { name: "alice", hashedPassword: "h" } }, alice)).toBe("PermissionDenied")
    expect(apply({ userGet: { name: "alice" } }, alice)).toBe("ok")
    expect(apply({ userGet: { name: "root" } }, alice)).toBe("PermissionDenied")
    expect(apply({ userGet: { name: "nosuch" } }, alice)).toBe("PermissionDenied")
    expect(apply({ roleGet: { role: "reader" } }, alice)).toBe("ok")
    expect(apply({ roleGet: { role: "writer" } }, alice)).toBe("PermissionDenied")
    expect(apply({ authStatus: {} }, alice)).toBe("PermissionDenied")
    expect(apply({ authenticate: { name: "alice", simpleToken: "x" } }, nobody)).toBe("ok")
    expect(apply({ authenticate: { name: "bob", simpleToken: "x" } }, nobody)).toBe("AuthFailed")
    expect(apply({ userDelete: { name: "alice" } })).toBe("ok")
  })

  it("keeps users' roles sorted, permissions sorted by key, and lists in name order", () => {
    const { apply, store } = setup()
    for (const name of ["zed", "amy", "bob"]) apply({ userAdd: { name, hashedPassword: "h", noPassword: false } })
    for (const name of ["w", "r", "m"]) apply({ roleAdd: { name } })
    for (const role of ["w", "r", "m"]) apply({ userGrantRole: { user: "amy", role } })
    apply({ roleGrantPermission: { name: "r", perm: perm("READ", "k") } })
    apply({ roleGrantPermission: { name: "r", perm: perm("READWRITE", "b", "c") } })
    apply({ roleGrantPermission: { name: "r", perm: perm("WRITE", "z", "\0") } })
    // A grant on an existing key and range end replaces its type; a different range end adds one.
    apply({ roleGrantPermission: { name: "r", perm: perm("WRITE", "k") } })
    apply({ roleGrantPermission: { name: "r", perm: perm("READ", "b", "d") } })
    const roleGet = store().apply(new MemoryBackend(), undefined, { roleGet: { role: "r" } })
    const perms = "ok" in roleGet ? roleGet.ok.perm!.map((p) => `${p.permType} ${new TextDecoder().decode(p.key)}-${[...p.rangeEnd].join(",")}`) : []
    expect(perms).toEqual(["READWRITE b-99", "READ b-100", "WRITE k-", "WRITE z-0"])
    const list = (req: AuthRequest) => {
      const r = store().apply(new MemoryBackend(), undefined, req)
      return "ok" in r ? r.ok : undefined
    }
    expect(list({ userList: {} })?.users).toEqual(["amy", "bob", "zed"])
    expect(list({ roleList: {} })?.roles).toEqual(["m", "r", "w"])
    expect(list({ userGet: { name: "amy" } })?.roles).toEqual(["m", "r", "w"])
    // Deleting a role takes it from every user.
    apply({ roleDelete: { role: "r" } })
    expect(list({ userGet: { name: "amy" } })?.roles).toEqual(["m", "w"])
  })

  it("grants the role root without a role object, as etcd", () => {
    const { apply } = setup()
    apply({ userAdd: { name: "root", hashedPassword: "h", noPassword: false } })
    expect(apply({ userGrantRole: { user: "root", role: "root" } })).toBe("ok")
    expect(apply({ authEnable: {} })).toBe("ok")
  })

  it("rejects an empty key or a range end below its key (etcd isValidPermissionRange)", () => {
    const { apply } = setup()
    apply({ roleAdd: { name: "r" } })
    expect(apply({ roleGrantPermission: { name: "r", perm: perm("READ", "") } })).toBe("InvalidAuthMgmt")
    expect(apply({ roleGrantPermission: { name: "r", perm: perm("READ", "b", "a") } })).toBe("InvalidAuthMgmt")
    expect(apply({ roleGrantPermission: { name: "r", perm: perm("READ", "b", "\0") } })).toBe("ok")
  })

  it("survives a restart: users, roles, the enabled flag and the revision are read back", () => {
    const { apply, reopen, store } = setup()
    apply({ userAdd: { name: "root", hashedPassword: "hash-r", noPassword: false } })
    apply({ userGrantRole: { user: "root", role: "root" } })
    apply({ userAdd: { name: "cn-user", hashedPassword: "", noPassword: true } })
    apply({ roleAdd: { name: "r" } })
    apply({ roleGrantPermission: { name: "r", perm: perm("READ", "a", "c") } })
    apply({ userGrantRole: { user: "cn-user", role: "r" } })
    apply({ authEnable: {} })
    const before = store().authRevision()
    reopen()
    expect(store().isEnabled()).toBe(true)
    expect(store().authRevision()).toBe(before)
    expect(store().user("root")).toEqual({ name: "root", password: "hash-r", roles: ["root"], noPassword: false })
    expect(store().user("cn-user")?.noPassword).toBe(true)
    const info: AuthInfo = { username: "cn-user", revision: before }
    expect(store().checkRange(info, { key: enc("b") }, "READ")).toBeUndefined()
    expect(store().checkRange(info, { key: enc("c") }, "READ")?.err.code).toBe("PermissionDenied")
  })
})

describe("auth store: permission checks (etcd range_perm_cache.go)", () => {
  const withPerms = (perms: ReadonlyArray<Permission>) => {
    const { apply, store } = setup()
    apply({ userAdd: { name: "root", hashedPassword: "h", noPassword: false } })
    apply({ userGrantRole: { user: "root", role: "root" } })
    apply({ userAdd: { name: "u", hashedPassword: "h", noPassword: false } })
    apply({ roleAdd: { name: "r" } })
    for (const p of perms) apply({ roleGrantPermission: { name: "r", perm: p } })
    apply({ userGrantRole: { user: "u", role: "r" } })
    apply({ authEnable: {} })
    const info: AuthInfo = { username: "u", revision: store().authRevision() }
    const check = (type: "READ" | "WRITE", key: string, rangeEnd?: string) =>
      store().checkRange(info, { key: enc(key), ...(rangeEnd === undefined ? {} : { rangeEnd: rangeEnd === "\0" ? new Uint8Array([0]) : enc(rangeEnd) }) }, type)?.err.code ?? "ok"
    return { check, store, apply, info }
  }

  it.each([
    // [permissions, type, key, range end, expected]
    [[perm("READ", "foo")], "READ", "foo", undefined, "ok"],
    [[perm("READ", "foo")], "READ", "foo0", undefined, "PermissionDenied"],
    [[perm("READ", "foo")], "WRITE", "foo", undefined, "PermissionDenied"],
    [[perm("READWRITE", "foo")], "WRITE", "foo", undefined, "ok"],
    [[perm("READ", "a", "c")], "READ", "a", "c", "ok"],
    [[perm("READ", "a", "c")], "READ", "a", "d", "PermissionDenied"],
    [[perm("READ", "a", "c")], "READ", "b", undefined, "ok"],
    [[perm("READ", "a", "c")], "READ", "c", undefined, "PermissionDenied"],
    // Unions: touching intervals cover together; a gap does not.
    [[perm("READ", "a", "b"), perm("READ", "b", "c")], "READ", "a", "c", "ok"],
    [[perm("READ", "a", "b"), perm("READ", "bb", "c")], "READ", "a", "c", "PermissionDenied"],
    [[perm("READ", "a", "b"), perm("WRITE", "b", "c")], "READ", "a", "c", "PermissionDenied"],
    // From-key permissions and requests (range end "\0": to the end of the key space).
    [[perm("READ", "b", "\0")], "READ", "b", "\0", "ok"],
    [[perm("READ", "b", "\0")], "READ", "c", "\0", "ok"],
    [[perm("READ", "b", "\0")], "READ", "b", "z", "ok"],
    [[perm("READ", "b", "\0")], "READ", "a", "\0", "PermissionDenied"],
    [[perm("READ", "b", "c")], "READ", "b", "\0", "PermissionDenied"],
    // The whole key space, as etcdctl's `get "" --prefix` asks it.
    [[perm("READ", "\0", "\0")], "READ", "\0", "\0", "ok"],
    [[perm("READ", "\0", "\0")], "READ", "anything", undefined, "ok"]
  ] as const)("%j %s [%s, %s) → %s", (perms, type, key, rangeEnd, want) => {
    expect(withPerms(perms).check(type, key, rangeEnd)).toBe(want)
  })

  it("refuses no user, a stale auth revision and an unknown user; lets root through", () => {
    const { store, apply, info } = withPerms([perm("READ", "a")])
    const s = store()
    expect(s.checkRange({ username: "", revision: 0 }, { key: enc("a") }, "READ")?.err.code).toBe("UserEmpty")
    expect(s.checkRange({ username: "ghost", revision: s.authRevision() }, { key: enc("a") }, "READ")?.err.code).toBe("PermissionDenied")
    expect(s.checkRange({ username: "root", revision: s.authRevision() }, { key: enc("zzz"), rangeEnd: new Uint8Array([0]) }, "WRITE")).toBeUndefined()
    // A change of the store makes requests authorised before it stale.
    apply({ roleAdd: { name: "other" } })
    expect(s.checkRange(info, { key: enc("a") }, "READ")?.err.code).toBe("AuthOldRevision")
    expect(s.checkRange({ ...info, revision: s.authRevision() }, { key: enc("a") }, "READ")).toBeUndefined()
  })

  it("permits everything while authentication is disabled", () => {
    const { store, apply } = withPerms([])
    apply({ authDisable: {} })
    expect(store().checkRange({ username: "", revision: 0 }, { key: enc("x") }, "WRITE")).toBeUndefined()
  })

  it("coversRange chains intervals in key order", () => {
    const iv = (b: string, e?: string) => ({ begin: enc(b), end: e === undefined ? undefined : enc(e) })
    expect(coversRange([iv("c", "d"), iv("a", "c")], enc("a"), enc("d"))).toBe(true)
    expect(coversRange([iv("a", "b")], enc("a"), undefined)).toBe(false)
    expect(coversRange([iv("a")], enc("b"), undefined)).toBe(true)
    expect(coversRange([], enc("a"), enc("b"))).toBe(false)
  })
})

describe("apply-time checks (etcd authApplierV3)", () => {
  const leases = {
    has: (id: bigint) => id === 7n,
    keys: (id: bigint) => (id === 7n ? [enc("foreign")] : [])
  }
  const { check, store, info } = (() => {
    const { apply, store } = setup()
    apply({ userAdd: { name: "root", hashedPassword: "h", noPassword: false } })
    apply({ userGrantRole: { user: "root", role: "root" } })
    apply({ userAdd: { name: "u", hashedPassword: "h", noPassword: false } })
    apply({ roleAdd: { name: "r" } })
    apply({ roleGrantPermission: { name: "r", perm: perm("READWRITE", "a", "c") } })
    apply({ roleGrantPermission: { name: "r", perm: perm("WRITE", "w") } })
    apply({ userGrantRole: { user: "u", role: "r" } })
    apply({ authEnable: {} })
    const info: AuthInfo = { username: "u", revision: store().authRevision() }
    const check = (request: WriteRequest | LeaseWriteRequest, who: AuthInfo = info) => authorizeWrite(store(), leases, who, request)?.err.code ?? "ok"
    return { check, store, info }
  })()
  const k = enc

  it.each([
    ["put inside", { put: { key: k("a1"), value: k("v") } }, "ok"],
    ["put outside", { put: { key: k("x"), value: k("v") } }, "PermissionDenied"],
    ["put write-only key", { put: { key: k("w"), value: k("v") } }, "ok"],
    ["put write-only key with prevKv (needs READ)", { put: { key: k("w"), value: k("v"), prevKv: true } }, "PermissionDenied"],
    ["put with a lease holding a foreign key", { put: { key: k("a1"), value: k("v"), lease: LeaseId(7n) } }, "PermissionDenied"],
    ["put with an unknown lease", { put: { key: k("a1"), value: k("v"), lease: LeaseId(9n) } }, "ok"],
    ["delete range inside", { deleteRange: { key: k("a"), rangeEnd: k("c") } }, "ok"],
    ["delete range past the permission", { deleteRange: { key: k("a"), rangeEnd: k("d") } }, "PermissionDenied"],
    ["delete write-only key with prevKv", { deleteRange: { key: k("w"), prevKv: true } }, "PermissionDenied"],
    ["txn compare outside", { txn: { compare: [{ result: "EQUAL", target: "VERSION", key: k("x"), version: 0 }], success: [], failure: [] } }, "PermissionDenied"],
    ["txn failure branch outside", { txn: { compare: [], success: [], failure: [{ requestPut: { key: k("x"), value: k("v") } }] } }, "PermissionDenied"],
    ["nested txn outside", { txn: { compare: [], success: [{ requestTxn: { compare: [], success: [{ requestDeleteRange: { key: k("x") } }], failure: [] } }], failure: [] } }, "PermissionDenied"],
    ["txn inside", { txn: { compare: [{ result: "EQUAL", target: "VERSION", key: k("a"), version: 0 }], success: [{ requestRange: { key: k("b") } }], failure: [] } }, "ok"],
    ["lease revoke with a foreign key", { leaseRevoke: { id: LeaseId(7n) } }, "PermissionDenied"],
    ["lease grant", { leaseGrant: { id: LeaseId(8n), ttl: 10, minTtl: 2 } }, "ok"],
    ["compaction", { compaction: { revision: 1 } }, "ok"]
  ] as const)("%s → %s", (_name, request, want) => {
    expect(check(request as WriteRequest | LeaseWriteRequest)).toBe(want)
  })

  it("lets root revoke any lease and refuses a request without a user", () => {
    expect(check({ leaseRevoke: { id: LeaseId(7n) } }, { username: "root", revision: store().authRevision() })).toBe("ok")
    expect(check({ put: { key: k("a1"), value: k("v") } }, { username: "", revision: 0 })).toBe("UserEmpty")
    expect(info.username).toBe("u")
  })
})
