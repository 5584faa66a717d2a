import test from 'ava';
import { DurationError, parseGoDuration } from '../../../builder/dockerfile/duration.js';

const ns = test.macro({
  exec(t, input: string, expected: number) {
    t.is(parseGoDuration(input), expected);
  },
  title: (_title, input: string, expected: number) => `duration ${JSON.stringify(input)} is ${expected}ns`,
});
test(ns, '0', 0);
test(ns, '-0', 0);
test(ns, '300ms', 300_000_000);
test(ns, '1.5h', 5_400_000_000_000);
test(ns, '-1.5h', -5_400_000_000_000);
test(ns, '2h45m0.5s', 9_900_500_000_000);
test(ns, '.5us', 500);
test(ns, '5.s', 5_000_000_000);
test(ns, '1µs', 1_000);
test(ns, '1μs', 1_000);

const invalid = test.macro({
  exec(t, input: string) {
    t.throws(() => parseGoDuration(input), { instanceOf: DurationError });
  },
  title: (_title, input: string) => `duration ${JSON.stringify(input)} is invalid`,
});
test(invalid, '');
test(invalid, '5');
test(invalid, '1d');
test(invalid, '.s');
test(invalid, '1 s');
test(invalid, '9223372036854775808ns');
