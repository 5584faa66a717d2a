// Validates what tsbuild writes against the OCI image-spec JSON schemas in ../shared/corpora (draft-04).
// The schemas' `id`s and relative `$ref`s are rewritten to one flat namespace (`tsb:<file>`) so that ajv
// resolves every reference to the file it names, whatever base URI a nested `id` would imply.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ajvDraft04 from 'ajv-draft-04';
import { repoRoot } from './index.js';

export const corporaDir = join(repoRoot, '..', 'shared', 'corpora');
export const imageSchemaDir = join(corporaDir, 'image-spec-schema');
export const haveImageSchemas = existsSync(imageSchemaDir);

function rewrite(node: unknown, top: boolean): unknown {
  if (Array.isArray(node)) return node.map((n) => rewrite(n, false));
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'id' && typeof v === 'string' && !top) continue;
    if (k === '$schema') continue;
    if (k === '$ref' && typeof v === 'string' && !v.startsWith('#')) {
      out[k] = `tsb:${v}`;
      continue;
    }
    out[k] = rewrite(v, false);
  }
  return out;
}

// the CommonJS module's default export, as NodeNext sees it
const Ajv = ajvDraft04.default;
let ajv: InstanceType<typeof Ajv> | undefined;
function validator(): InstanceType<typeof Ajv> {
  if (ajv) return ajv;
  ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  for (const f of readdirSync(imageSchemaDir).filter((n) => n.endsWith('.json'))) {
    const schema = rewrite(JSON.parse(readFileSync(join(imageSchemaDir, f), 'utf8')), true) as Record<string, unknown>;
    schema.id = `tsb:${f}`;
    ajv.addSchema(schema);
  }
  return ajv;
}

export type OciKind = 'manifest' | 'index' | 'config' | 'layout' | 'descriptor';
const FILES: Record<OciKind, string> = {
  manifest: 'image-manifest-schema.json',
  index: 'image-index-schema.json',
  config: 'config-schema.json',
  layout: 'image-layout-schema.json',
  descriptor: 'content-descriptor.json',
};

/** validateOci returns the schema errors of a document (empty when valid). */
export function validateOci(kind: OciKind, doc: unknown): string[] {
  const v = validator();
  const ok = v.validate(`tsb:${FILES[kind]}`, doc);
  if (ok) return [];
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`);
}
