// Compares the CIDs `ipfs-stream add` prints with those of the reference JavaScript importer
// (ipfs-unixfs-importer) set to Kubo's profiles, on random files.
//
// usage: node parity.mjs <ipfs-stream binary> [random cases, default 24] [seed]
import { execFileSync } from 'node:child_process'
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BlackHoleBlockstore } from 'blockstore-core'
import { importFile } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const [binary, countArg, seedArg] = process.argv.slice(2)
if (!binary) {
  console.error('usage: node parity.mjs <ipfs-stream binary> [cases] [seed]')
  process.exit(2)
}
const count = Number(countArg ?? 24)
let state = BigInt(seedArg ?? Date.now()) & 0xffffffffn
console.log(`seed ${state}`)

// xorshift32: reproducible sizes and bytes from the printed seed.
function next () {
  state ^= (state << 13n) & 0xffffffffn
  state ^= state >> 17n
  state ^= (state << 5n) & 0xffffffffn
  return Number(state)
}

function randomBytes (size) {
  const out = Buffer.alloc(size)
  for (let i = 0; i + 4 <= size; i += 4) out.writeUInt32LE(next() >>> 0, i)
  for (let i = size - (size % 4); i < size; i++) out[i] = next() & 0xff
  return out
}

const profiles = [
  { name: 'kubo default (v0)', args: [], js: { cidVersion: 0, rawLeaves: false, chunk: 262144 } },
  { name: 'cid-version 1', args: ['--cid-version', '1'], js: { cidVersion: 1, rawLeaves: true, chunk: 262144 } },
  { name: 'v1 size-1024', args: ['--cid-version', '1', '--chunker', 'size-1024'], js: { cidVersion: 1, rawLeaves: true, chunk: 1024 } }
]

async function referenceCid (path, { cidVersion, rawLeaves, chunk }) {
  const entry = await importFile({ path: 'f', content: createReadStream(path, { highWaterMark: 1 << 20 }) }, new BlackHoleBlockstore(), {
    cidVersion,
    rawLeaves,
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize: chunk }),
    layout: balanced({ maxChildrenPerNode: 174 })
  })
  return entry.cid.toString()
}

const work = mkdtempSync(join(tmpdir(), 'importer-parity-'))
const dataDir = join(work, 'repo')
const sizes = [0, 1, 262144, 262145]
for (let i = 0; i < count; i++) sizes.push(next() % (3 * 1024 * 1024 + 1))
// Above 174 chunks: the tree gains a level.
sizes.push(174 * 262144 + 1, 175 * 262144 + 12345)

let passed = 0
let failed = 0
try {
  for (const size of sizes) {
    const path = join(work, 'input.bin')
    writeFileSync(path, randomBytes(size))
    for (const profile of profiles) {
      if (profile.js.chunk === 1024 && size > 4 * 1024 * 1024) continue // 45k leaves: slow in JS, same code path
      const expected = await referenceCid(path, profile.js)
      const actual = execFileSync(binary, ['add', '-q', '--pin=false', ...profile.args, path], {
        env: { ...process.env, IPFS_STREAM_DATA_DIR: dataDir }
      }).toString().trim()
      if (actual === expected) {
        passed++
      } else {
        failed++
        console.log(`MISMATCH size ${size} ${profile.name}: ipfs-stream ${actual}, reference ${expected}`)
      }
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}
console.log(`parity: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
