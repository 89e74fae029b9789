// tsc does not emit .d.ts sources: copy the generated schema next to the compiled client.
import { copyFileSync } from "node:fs";

copyFileSync(new URL("../src/schema.d.ts", import.meta.url), new URL("../dist/schema.d.ts", import.meta.url));
