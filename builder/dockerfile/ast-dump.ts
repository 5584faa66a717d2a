// BuildKit's parse-tree dump: one S-expression per instruction, the form of its parser golden files
// (`(copy ["--user=me"] "foo" "/tmp/")`, `(onbuild (run "echo" "test"))`). Used to check builder/dockerfile/ast.ts against the
// corpus and handy for debugging a Dockerfile (`tsbuild` can print it).

import type { AstNode, AstResult } from './ast.js';
import { goQuote, goToLower, goTrimSpace } from './go-strings.js';

export { goQuote } from './go-strings.js';

/** dumpNode prints one node: lowercase keyword, flags as a Go-quoted list, arguments Go-quoted, ONBUILD nested. */
export function dumpNode(node: AstNode): string {
  let s = goToLower(node.keyword);
  if (node.flags.length > 0) s += ` [${node.flags.map(goQuote).join(' ')}]`;
  if (node.sub) s += ` (${dumpNode(node.sub)})`;
  for (const arg of node.args) s += ` ${goQuote(arg)}`;
  return goTrimSpace(s);
}

/** dumpAst prints every node as `(…)` on its own line, newline-terminated: the text of a corpus `result` file. */
export function dumpAst(ast: AstResult | readonly AstNode[]): string {
  const nodes = 'nodes' in ast ? ast.nodes : ast;
  return nodes.map((n) => `(${dumpNode(n)})\n`).join('');
}
