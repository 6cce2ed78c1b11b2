/** The version of fwgate's programs (fwgate, fwpush, fwsim, fwsign), as in package.json (a test checks they agree). */
export const TOOL_VERSION = '0.1.0';
