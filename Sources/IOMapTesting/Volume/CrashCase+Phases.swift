// Counterpart: none in the kernel; the phases of a crash case (CrashCase.swift): the
// workload and its cut, then recovery and its checks, as dm-log-writes replays and
// CrashMonkey's harness run them.

import ExtentFS
import IOMap
import IOMapBase
import Volume

extension CrashCase {
    /// The `keeping` rule of an armed crash.
    func keeping(_ keep: CrashKeep) -> @Sendable (Int, Int) -> Bool {
        let logEnd = (try? DeviceLogStore.open(device).metadataBlocks) ?? 0
        switch keep {
        case .coin(let p):
            let coin = SeededCoin(seed: random.next(), probability: p)
            return { _, _ in coin.flip() }
        case .logOnly: return { block, _ in block < logEnd }
        case .dataOnly: return { block, _ in block >= logEnd }
        case .none: return { _, _ in false }
        }
    }

    func chooseKeep() -> CrashKeep {
        switch below(8) {
        case 0, 1, 2: return .coin(fraction())
        case 3, 4: return .logOnly
        case 5: return .dataOnly
        default: return .none
        }
    }

    /// Runs `count` ops from the volume as it is, then crashes; the model of what it did.
    func runPhase(_ phase: Int, ops count: Int) -> CrashModel? {
        var model: CrashModel
        do throws(Errno) { model = try CrashModel(volume: volume!) } catch {
            violation("phase \(phase): reading the volume failed: \(error)")
            return nil
        }
        var armed: Int?
        if below(2) == 0 {
            let k = 1 + below(max(1, count / 3))
            let keep = chooseKeep()
            device.armCrash(atFlush: k, keeping: keeping(keep))
            armed = k
            log("phase \(phase): \(count) ops, a crash armed at flush \(k) (\(keep))")
        } else {
            log("phase \(phase): \(count) ops, then a crash")
        }
        boundaryForces?.setActive(true)
        defer { boundaryForces?.setActive(false) }
        for _ in 0..<count {
            let op = generator.next(model)
            let k = model.opCount
            let before = volume!.journal.stats
            var created: InodeNumber?
            var failure: Errno?
            do throws(Errno) { created = try perform(op, model) } catch { failure = error }
            result.ops += 1
            if device.crashed {
                // At a flush of its own, or of a force at a boundary inside it (after which
                // the call may have returned, with what it made).
                model.recordInterrupted(op, created: created)
                result.flushCrashes += 1
                log("  op \(k): \(op): the crash came at its flush\(failure.map { " (\($0))" } ?? "")")
                break
            }
            if let failure {
                violation("phase \(phase): op \(k) (\(op)) failed: \(failure)")
                return nil
            }
            let after = volume!.journal.stats
            let forced = after.checkpoints != before.checkpoints || after.snapshots != before.snapshots
            model.record(op, created: created, forced: forced)
            log("  op \(k): \(op)\(created.map { " = #\($0.rawValue)" } ?? "")\(forced ? " (forced the log)" : "")")
        }
        if !device.crashed {
            if let k = armed {
                device.disarmCrash()
                log("  (the workload ended before flush \(k))")
            }
            let keep = fraction()
            log("  crash after op \(model.opCount - 1): each unflushed write kept with probability \(Double(Int(keep * 100)) / 100)")
            retire()
            device.crash(keepFraction: keep)
        } else {
            retire()
        }
        log("  durable: ops before \(model.durable)")
        return model
    }

    /// Does `op` on the volume; the inode a create or mkdir made.
    func perform(_ op: CrashOp, _ m: CrashModel) throws(Errno) -> InodeNumber? {
        let done = try performCrashOp(op, on: volume!, handles: &handles, model: m)
        if let wrote = done.shortWrite { violation("\(op): wrote \(wrote) bytes") }
        return done.created
    }
}

/// fsck of `device` as it is: each error it finds, and a volume it cannot open, as a line.
func fsckViolations(_ device: any BlockDevice, _ context: String) -> [String] {
    do throws(VolumeError) {
        let report = checkVolume(try DeviceLogStore.open(device), deviceBlocks: device.blockCount)
        return report.checks.flatMap { c in c.errors.map { "fsck \(context): \(c.code): \($0)" } }
    } catch {
        return ["fsck \(context): the volume cannot be opened: \(error)"]
    }
}

extension CrashCase {
    /// fsck of the device as it is; its errors become violations.
    func fsck(_ context: String) {
        for v in fsckViolations(device, context) { violation(v) }
    }

    func mount(_ context: String) -> Bool { mount(failure: "mount \(context) failed") }

    /// Mounts the volume, formatting the device with `format` first when it is given; false,
    /// with a violation that starts with `failure`, when either fails.
    func mount(formatting format: FormatOptions? = nil, failure: String) -> Bool {
        do throws(VolumeError) {
            if let format { try Volume.format(device: device, options: format) }
            volume = try Volume.mount(device: device, options: options)
            result.mounts += 1
            return true
        } catch {
            violation("\(failure): \(error)")
            return false
        }
    }

    /// Recovery after a phase's crash and every check of it; false when the case cannot go on.
    func recover(_ model: CrashModel, phase: Int) -> Bool {
        device.revive()
        fsck("of the crashed image (phase \(phase))")
        guard mountAfterCrash(phase) else { return false }
        fsck("after the mount (phase \(phase))")
        let check = model.check(volume!)
        result.filesChecked += check.files
        result.exactFiles += check.exact
        for v in check.violations { violation("phase \(phase): \(v)") }
        log("  recovered the tree of op \(check.matched.map(String.init).joined(separator: "/")); \(check.files) files checked")
        if below(2) == 0 { guard crashRightAfterMount(phase) else { return false } }
        return probe(phase)
    }

    /// The mount after a crash, a third of the time with a crash armed at one of its own
    /// first flushes (the snapshot recovery writes), and then mounted again.
    func mountAfterCrash(_ phase: Int) -> Bool {
        guard below(3) == 0 else { return mount("after the crash (phase \(phase))") }
        let k = 1 + below(3)
        let keep = chooseKeep()
        device.armCrash(atFlush: k, keeping: keeping(keep))
        do throws(VolumeError) {
            volume = try Volume.mount(device: device, options: options)
        } catch {
            guard device.crashed else {
                violation("mount after the crash (phase \(phase)) failed: \(error)")
                return false
            }
        }
        guard device.crashed else {
            device.disarmCrash()
            result.mounts += 1
            log("  mounted (a crash armed at its flush \(k) did not come)")
            return true
        }
        result.mountCrashes += 1
        log("  the mount crashed at its flush \(k) (\(keep)); mounting again")
        retire()
        device.revive()
        fsck("after a crash during the mount (phase \(phase))")
        return mount("after a crash during the mount (phase \(phase))")
    }

    /// The tree, every file's contents, every symlink's target and every xattr.
    func picture() throws(Errno) -> [String: [UInt8]] {
        let v = volume!
        let state = v.state
        let t = readTree(state)
        var out: [String: [UInt8]] = [:]
        for (p, ino) in t.tree {
            let id = [UInt8(truncatingIfNeeded: ino.rawValue)]
            switch state[ino]?.attributes.type {
            case .regular: out[p] = try readContents(v, ino)
            case .symlink: out[p] = id + (state[ino]?.symlinkTarget ?? [])
            default: out[p] = id
            }
        }
        for (ino, x) in readXattrs(state, t.tree) {
            for (name, value) in x { out["#\(ino.rawValue) xattr \(String(decoding: name, as: UTF8.self))"] = value }
        }
        return out
    }

    /// A crash just after the mount, keeping a random part of what is unflushed: the next
    /// mount must find the same volume.
    func crashRightAfterMount(_ phase: Int) -> Bool {
        do throws(Errno) {
            let before = try picture()
            retire()
            device.crash(keepFraction: fraction())
            guard mount("after a crash right after the mount (phase \(phase))") else { return false }
            let after = try picture()
            if after != before {
                let differ = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.sorted()
                violation("phase \(phase): a crash right after the mount changed \(differ.joined(separator: ", "))")
            }
            fsck("after a crash right after the mount (phase \(phase))")
            log("  crashed right after the mount and mounted again")
            return true
        } catch {
            violation("phase \(phase): reading the volume after a crash right after the mount failed: \(error)")
            return false
        }
    }

    /// The volume takes new writes: a file created, written and fsync'd survives a crash.
    func probe(_ phase: Int) -> Bool {
        let name = "probe\(phase)"
        let data = crashData(stamp: 10_000 + phase, offset: 0, count: 1 + below(64 << 10))
        do throws(Errno) {
            let ino = try volume!.create(in: .root, name, permissions: 0o644).inode
            let h = try volume!.open(ino)
            try h.write(data, at: 0)
            try h.fsync()
            handles[ino] = h
            retire()
            device.crash(keepFraction: fraction())
            guard mount("after the probe's crash (phase \(phase))") else { return false }
            let back = try readContents(volume!, try volume!.lookup(.root, name))
            if back != data { violation("phase \(phase): the probe \(name) read back \(back.count) bytes, not its \(data.count) fsync'd") }
            fsck("after the probe's crash (phase \(phase))")
            log("  the probe \(name) (\(data.count) bytes, fsync'd) survived a crash")
            return true
        } catch {
            violation("phase \(phase): the recovered volume did not take the probe \(name): \(error)")
            return false
        }
    }
}
