// BuildKit's frontend/dockerfile/exclude_patterns_test.go (testExcludedFilesOnCopy), replayed offline from a
// context directory (its second half reads the same files from a git repository: not ported, no git sources).
// See harness.ts and README.md.
import { readdirSync } from 'node:fs';
import { declareCases, type BkCase, type CtxEntry, type FileWant } from './harness.js';

const F = 'exclude_patterns_test.go testExcludedFilesOnCopy';

const context: Record<string, CtxEntry> = {
  dir1: { dir: true, mode: 0o777 },
  dir2: { dir: true, mode: 0o777 },
  dir3: { dir: true, mode: 0o777 },
  dir4: { dir: true, mode: 0o777 },
  'dir1/file-101.png': { content: '2', mode: 0o600 },
  'dir1/file-102.txt': { content: '3', mode: 0o600 },
  'dir1/file-103.jpeg': { content: '4', mode: 0o600 },
  'dir2/file-201.pdf': { content: '6', mode: 0o600 },
  'dir2/file-202.jpeg': { content: '7', mode: 0o600 },
  'dir2/file-203.png': { content: '8', mode: 0o600 },
  'dir3/file-301.mp3': { content: '9', mode: 0o600 },
  'dir3/file-302.mpeg': { content: '10', mode: 0o600 },
  'dir4/file-401.txt': { content: '11', mode: 0o600 },
  'dir4/file-402.txt': { link: 'file-401.txt' },
  'dir4/file-403.txt': { link: 'file-404.txt' },
};

/** one stage of the test's Dockerfile, built alone, and the paths BuildKit checks in it */
const stage = (title: string, instruction: string, files: Record<string, FileWant>): BkCase => ({
  from: F,
  title,
  dockerfile: `FROM scratch\n${instruction}\n`,
  context,
  expect: { files },
});

const link = (target: string): FileWant => ({ type: 'symlink', link: target });

export const cases: BkCase[] = [
  stage(
    'COPY --exclude of image files skips them in every directory',
    'COPY --exclude=*/*.png --exclude=*/*.jpeg . /1',
    {
      '1/dir1/file-101.png': 'absent',
      '1/dir1/file-102.txt': '3',
      '1/dir1/file-103.jpeg': 'absent',
      '1/dir2/file-201.pdf': '6',
      '1/dir2/file-202.jpeg': 'absent',
      '1/dir2/file-203.png': 'absent',
      '1/dir3/file-301.mp3': '9',
      '1/dir3/file-302.mpeg': '10',
      '1/dir4/file-401.txt': '11',
      '1/dir4/file-402.txt': link('file-401.txt'),
      '1/dir4/file-403.txt': link('file-404.txt'),
    },
  ),
  stage(
    'COPY --exclude of document files skips them, symlinks named like them too',
    'COPY --exclude=*/*.pdf --exclude=*/*.txt . /2',
    {
      '2/dir1/file-101.png': '2',
      '2/dir1/file-102.txt': 'absent',
      '2/dir1/file-103.jpeg': '4',
      '2/dir2/file-201.pdf': 'absent',
      '2/dir2/file-202.jpeg': '7',
      '2/dir2/file-203.png': '8',
      '2/dir3/file-301.mp3': '9',
      '2/dir3/file-302.mpeg': '10',
      '2/dir4/file-401.txt': 'absent',
      '2/dir4/file-402.txt': 'absent',
      '2/dir4/file-403.txt': 'absent',
    },
  ),
  stage('ADD --exclude matches paths relative to the source directory', 'ADD --exclude=*.mp3 dir3/ /3/', {
    '3/file-301.mp3': 'absent',
    '3/file-302.mpeg': '10',
  }),
  stage(
    'COPY --exclude with a wildcard source applies below each match',
    'COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/',
    {
      '4/file-101.png': 'absent',
      '4/file-102.txt': 'absent',
      '4/file-103.jpeg': 'absent',
      '4/file-201.pdf': 'absent',
      '4/file-202.jpeg': 'absent',
      '4/file-203.png': 'absent',
      '4/file-301.mp3': 'absent',
      '4/file-302.mpeg': '10',
      '4/dir4/file-401.txt': 'absent',
      '4/file-401.txt': 'absent',
      '4/file-402.txt': 'absent',
      '4/file-403.txt': 'absent',
    },
  ),
  stage(
    'ADD --exclude with a wildcard source keeps what no pattern matches, symlinks as symlinks',
    'ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5',
    {
      '5/file-101.png': 'absent',
      '5/file-102.txt': '3',
      '5/file-103.jpeg': 'absent',
      '5/file-201.pdf': 'absent',
      '5/file-202.jpeg': 'absent',
      '5/file-203.png': 'absent',
      '5/file-301.mp3': 'absent',
      '5/file-302.mpeg': 'absent',
      '5/file-401.txt': '11',
      '5/file-402.txt': link('file-401.txt'),
      '5/file-403.txt': link('file-404.txt'),
    },
  ),
  {
    from: F,
    title: 'ADD --exclude=* of a wildcard source creates the destination, empty',
    dockerfile: 'FROM scratch\nADD --exclude=* dir* /6\n',
    context,
    expect: {
      files: { '6': { type: 'dir' } },
      check: (t, { root }) => {
        t.deepEqual(readdirSync(`${root!}/6`), []);
      },
    },
  },
  {
    from: F,
    title: 'the stages copied together give the same tree (the test builds them as one Dockerfile)',
    dockerfile: `FROM scratch AS builder3
ADD --exclude=*.mp3 dir3/ /3/
FROM scratch AS builder6
ADD --exclude=* dir* /6
FROM scratch
COPY --from=builder3 / /builder3
COPY --from=builder6 / /builder6
`,
    context,
    expect: {
      files: { 'builder3/3/file-302.mpeg': '10', 'builder3/3/file-301.mp3': 'absent', 'builder6/6': { type: 'dir' } },
    },
  },
];

declareCases(cases);
