import test from 'ava';
import { parseAst } from '../../../builder/dockerfile/ast.js';
import { dumpAst, dumpNode } from '../../../builder/dockerfile/ast-dump.js';

test('dumpAst prints one S-expression per instruction, newline-terminated', (t) => {
  t.is(
    dumpAst(parseAst('FROM a\nCOPY --user=me foo /tmp/\nCMD []\n')),
    '(from "a")\n(copy ["--user=me"] "foo" "/tmp/")\n(cmd)\n',
  );
});

test('dumpNode nests the ONBUILD trigger with its own flags', (t) => {
  const node = parseAst('ONBUILD RUN --network=none ["a"]\n').nodes[0]!;
  t.is(dumpNode(node), '(onbuild (run ["--network=none"] "a"))'.slice(1, -1));
});

test('dumpAst accepts a node list', (t) => {
  t.is(dumpAst(parseAst('ENV a b\n').nodes), '(env "a" "b" "")\n');
});
