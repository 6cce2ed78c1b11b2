import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './processes.ts';

const run = promisify(execFile);

/** The CMake build folder of device-c (git-ignored); one build serves every test file and the demo. */
export const DEVICE_C_BUILD = join(ROOT, 'device-c', 'build');

export interface DeviceCBuild {
  /** The POSIX device (device-c/ports/posix). */
  fwdevice: string;
  /** The core's vector harness (device-c/tests/vectors.c). */
  vectors: string;
  /** The core's state-machine tests over an in-memory port (device-c/tests/core_tests.c). */
  coreTests: string;
}

let building: Promise<DeviceCBuild> | undefined;

/**
 * Configure (once) and build device-c with CMake; incremental, so a second call costs a second.
 * Needs cmake, a C compiler, libmosquitto-dev and libsodium-dev (.ci/run installs them).
 */
export function buildDeviceC(): Promise<DeviceCBuild> {
  building ??= (async () => {
    const src = join(ROOT, 'device-c');
    try {
      // configure once; `cmake --build` re-runs the configuration itself when CMakeLists.txt changes
      if (!existsSync(join(DEVICE_C_BUILD, 'CMakeCache.txt'))) {
        await run('cmake', ['-S', src, '-B', DEVICE_C_BUILD, '-DCMAKE_BUILD_TYPE=RelWithDebInfo'], { maxBuffer: 1 << 24 });
      }
      await run('cmake', ['--build', DEVICE_C_BUILD, '-j', '2'], { maxBuffer: 1 << 24 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`building device-c failed (needs cmake, libmosquitto-dev, libsodium-dev): ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    }
    return {
      fwdevice: join(DEVICE_C_BUILD, 'fwdevice'),
      vectors: join(DEVICE_C_BUILD, 'fwd_vectors'),
      coreTests: join(DEVICE_C_BUILD, 'fwd_core_tests'),
    };
  })();
  return building;
}

/** The built fwdevice, without building (for a rig's power-on, after its preflight built it). */
export function fwdevicePath(): string {
  const path = join(DEVICE_C_BUILD, 'fwdevice');
  if (!existsSync(path)) throw new Error(`${path} is missing: build device-c first (the rig's preflight \`sim-device.ts c-build\`, or cmake -S device-c -B device-c/build && cmake --build device-c/build)`);
  return path;
}
