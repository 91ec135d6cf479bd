/**
 * Runs one sqlora command module in a process of its own, as src/cli/main.ts does (flags, --help,
 * errors on one line with the same exit codes), for CLI tests of commands not yet registered
 * in main.ts. Usage: node --import tsx test/helpers/command-main.ts <command> [flags...]
 */
import { formatCommandHelp, parseCommandArgs, type CommandSpec } from '../../src/cli/args.js';
import { UserError } from '../../src/util/errors.js';

const [name, ...rest] = process.argv.slice(2);
try {
  const { command } = (await import(`../../src/cli/commands/${name}.ts`)) as { command: CommandSpec };
  const args = parseCommandArgs(command, rest);
  if (args.boolean('help')) process.stdout.write(formatCommandHelp(command));
  else await command.run(args);
} catch (err) {
  if (err instanceof UserError) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 70;
  }
}
