import { InvalidInputError } from '../../sys/errors.js';
import { loginRegistry } from '../../layers/registry/login.js';
import { type GlobalFlags, out } from '../common.js';
import { type RemoteFlags, remoteOptions } from './push.js';

export default async function login(
  registry: string,
  flags: GlobalFlags & RemoteFlags & { username?: string; password?: string; 'password-stdin'?: boolean },
): Promise<void> {
  let username = flags.username === undefined ? '' : String(flags.username);
  let password = flags.password === undefined ? '' : String(flags.password);
  if (flags['password-stdin']) {
    if (flags.password !== undefined)
      throw new InvalidInputError('--password and --password-stdin cannot be used together');
    if (!username) throw new InvalidInputError('--password-stdin needs --username');
    password = await readStdin();
  } else if (password) {
    process.stderr.write(
      'warning: a password on the command line is visible to other users; prefer --password-stdin\n',
    );
  }
  if (!username || !password) {
    if (!process.stdin.isTTY)
      throw new InvalidInputError('a username and a password are needed', 'pass -u NAME --password-stdin');
    if (!username) username = await prompt('Username: ', false);
    if (!password) password = await prompt('Password: ', true);
  }
  const { caCert, insecure } = remoteOptions(flags);
  const r = await loginRegistry(registry, {
    username,
    password,
    ...(caCert ? { caCert } : {}),
    ...(insecure ? { insecure } : {}),
  });
  process.stderr.write(
    `credentials saved ${r.helper ? `in docker-credential-${r.helper}` : `in ${r.path}`}${r.identityToken ? ' (as an identity token)' : ''}\n`,
  );
  out('Login Succeeded');
}

/** readStdin reads standard input (bounded) and drops one trailing newline. */
async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024) throw new InvalidInputError('the password on standard input is longer than 64 KiB');
    parts.push(chunk);
  }
  return Buffer.concat(parts)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** prompt reads one line from the terminal; with `secret`, without echo. */
function prompt(question: string, secret: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    let value = '';
    const wasRaw = stdin.isRaw;
    if (secret) stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error): void => {
      stdin.off('data', onData);
      if (secret) stdin.setRawMode(wasRaw);
      stdin.pause();
      if (secret) process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (s: string): void => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new InvalidInputError('login cancelled'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
