import { formatDoctor, runDoctor } from '../../doctor/doctor.js';
import { UserError } from '../../util/errors.js';
import { positiveInt, type CommandSpec } from '../args.js';

export const command: CommandSpec = {
  name: 'doctor',
  summary: 'can this machine run the main job? Node, GPU and driver, CUDA libraries, memory, caches, Hub',
  usage: '[--json] [--timeout MS]',
  flags: [
    { name: 'json', type: 'boolean', description: 'print the checks as JSON (for scripts)' },
    {
      name: 'timeout',
      type: 'number',
      metavar: 'MS',
      default: 3000,
      description: 'how long to wait for the Hugging Face Hub (HF_ENDPOINT) to answer',
    },
  ],
  details: [
    'Each line says ok, warn (runs, with a caveat) or fail (the main job, training the default model on the GPU,',
    'cannot run until fixed), with the fix to apply. Exits 1 when a check fails. The Hub token is never printed.',
  ].join('\n'),
  async run(args) {
    const report = await runDoctor({ timeoutMs: positiveInt('doctor', 'timeout', args.number('timeout')) });
    process.stdout.write(args.boolean('json') ? JSON.stringify(report, null, 2) + '\n' : formatDoctor(report));
    if (!report.ok) {
      const failed = report.checks.filter((c) => c.status === 'fail').map((c) => c.name);
      throw new UserError(`doctor: the main job cannot run here (failed: ${failed.join(', ')})`);
    }
  },
};
