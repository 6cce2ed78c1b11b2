/**
 * npm run footprint [-- --json]
 *
 * The device core's footprint on a Cortex-M4 (docs/device-guide.md "Footprint"): every file of
 * device-c/core compiled with arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mthumb, linked with
 * --gc-sections against newlib-nano and a stub port (device-c/footprint/stub_port.c) whose
 * functions do nothing; the link map attributes each kept section to its object, so the core's
 * .text, .rodata, .data and .bss are reported apart from the stub and from the C library
 * functions it uses (memcpy, memset, strlen, ...). RAM without chunk buffers: the core never
 * copies a chunk (it writes chunk.data from the port's receive buffer), so its RAM is its static
 * data plus the fwd_device struct (the stub's one instance, counted as core RAM). Exit 1 when
 * the core exceeds 24 KiB of flash or 8 KiB of RAM.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './lib/processes.ts';

const run = promisify(execFile);
const json = process.argv.includes('--json');
export const FLASH_LIMIT = 24 * 1024;
export const RAM_LIMIT = 8 * 1024;

interface Sizes { text: number; rodata: number; data: number; bss: number }
const zero = (): Sizes => ({ text: 0, rodata: 0, data: 0, bss: 0 });

export async function measureFootprint(): Promise<{ core: Sizes; libc: Sizes; stub: Sizes; deviceStruct: number; flash: number; ram: number; compiler: string; flags: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'fwgate-footprint-'));
  try {
    const core = join(ROOT, 'device-c', 'core');
    const sources = (await readdir(core)).filter((f) => f.endsWith('.c')).map((f) => join(core, f));
    const flags = ['-mcpu=cortex-m4', '-mthumb', '-mfloat-abi=soft', '-Os', '-std=c99', '-ffunction-sections', '-fdata-sections', '-Wall'];
    const objs: string[] = [];
    for (const src of [...sources, join(ROOT, 'device-c', 'footprint', 'stub_port.c')]) {
      const obj = join(dir, `${basename(src, '.c')}.o`);
      await run('arm-none-eabi-gcc', [...flags, '-I', core, '-c', src, '-o', obj]);
      objs.push(obj);
    }
    const elf = join(dir, 'core.elf');
    const map = join(dir, 'core.map');
    await run('arm-none-eabi-gcc', [...flags, '-specs=nano.specs', '-nostartfiles', '-Wl,--gc-sections', '-Wl,--entry=footprint_main', `-Wl,-Map=${map}`, ...objs, '-o', elf]);
    const sizes = { core: zero(), libc: zero(), stub: zero() };
    // lines like " .text.fwd_init  0x00008000  0x1a4 /tmp/.../fwd_device.o" (the name may be on the line before)
    const text = await readFile(map, 'utf8');
    const body = text.slice(text.indexOf('Linker script and memory map'));
    const re = /^ (\.[A-Za-z0-9_.$]+)?\s*\n?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+\.o\)?)$/gm;
    for (const m of body.matchAll(re)) {
      const [, section, addr, size, file] = m as unknown as [string, string | undefined, string, string, string];
      if (!section || Number.parseInt(addr, 16) === 0 && !section.startsWith('.bss')) continue;
      const kind: keyof Sizes | undefined = section.startsWith('.text') ? 'text' : section.startsWith('.rodata') ? 'rodata'
        : section.startsWith('.data') ? 'data' : section.startsWith('.bss') || section.startsWith('COMMON') ? 'bss' : undefined;
      if (!kind) continue;
      const who = file.includes('stub_port.o') ? 'stub' : file.startsWith(dir) ? 'core' : 'libc';
      sizes[who][kind] += Number.parseInt(size, 16);
    }
    // the stub's one fwd_device instance is the core's RAM
    const { stdout: nm } = await run('arm-none-eabi-nm', ['-S', '--size-sort', elf]);
    const deviceStruct = Number.parseInt(/^[0-9a-f]+ ([0-9a-f]+) [bB] device$/m.exec(nm)?.[1] ?? '0', 16);
    sizes.stub.bss -= deviceStruct;
    sizes.core.bss += deviceStruct;
    const { stdout: version } = await run('arm-none-eabi-gcc', ['--version']);
    const flash = sizes.core.text + sizes.core.rodata + sizes.core.data + sizes.libc.text + sizes.libc.rodata + sizes.libc.data;
    const ram = sizes.core.data + sizes.core.bss + sizes.libc.data + sizes.libc.bss;
    return { ...sizes, deviceStruct, flash, ram, compiler: version.split('\n')[0]!, flags };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const f = await measureFootprint();
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...f, flashLimit: FLASH_LIMIT, ramLimit: RAM_LIMIT })}\n`);
  } else {
    const row = (name: string, s: Sizes): string => `${name.padEnd(22)}${String(s.text).padStart(8)}${String(s.rodata).padStart(8)}${String(s.data).padStart(8)}${String(s.bss).padStart(8)}`;
    process.stdout.write(`${f.compiler}\n${f.flags.join(' ')}\n\n${''.padEnd(22)}   .text .rodata   .data    .bss\n`);
    process.stdout.write(`${row('core (device-c/core)', f.core)}\n${row('libc (newlib-nano)', f.libc)}\n${row('stub port (not counted)', f.stub)}\n\n`);
    process.stdout.write(`flash (core + libc): ${f.flash} bytes (${(f.flash / 1024).toFixed(1)} KiB, limit ${FLASH_LIMIT / 1024} KiB)\n`);
    process.stdout.write(`RAM (core + libc):   ${f.ram} bytes (${(f.ram / 1024).toFixed(1)} KiB, limit ${RAM_LIMIT / 1024} KiB), of which fwd_device ${f.deviceStruct} bytes\n`);
  }
  process.exit(f.flash <= FLASH_LIMIT && f.ram <= RAM_LIMIT ? 0 : 1);
}
