import { readResults, readTrainingRun } from '../../report/inputs.js';
import { readMmluResults } from '../../report/mmluSection.js';
import { writeReport } from '../../report/report.js';
import { UserError } from '../../util/errors.js';
import { positiveInt, type CommandSpec } from '../args.js';

export const command: CommandSpec = {
  name: 'report',
  summary: 'markdown + self-contained HTML report: loss curves, before/after metrics by hardness, examples',
  usage: '[--run DIR] [--baseline FILE] [--finetuned FILE] [--mmlu FILE] [--out DIR]',
  flags: [
    {
      name: 'run',
      type: 'string',
      metavar: 'DIR',
      description: 'training run folder from sqlora train --out (metrics.jsonl, training_summary.json)',
    },
    {
      name: 'baseline',
      type: 'string',
      metavar: 'FILE',
      description: 'results.json of the model before fine-tuning (sqlora baseline, or sqlora evaluate --out)',
    },
    {
      name: 'finetuned',
      type: 'string',
      metavar: 'FILE',
      description: 'results.json of the fine-tuned model (sqlora eval, or sqlora evaluate --out)',
    },
    {
      name: 'mmlu',
      type: 'string',
      metavar: 'FILE',
      description: 'results.json of sqlora mmlu: a section with accuracy per category before/after and the verdict',
    },
    {
      name: 'out',
      type: 'string',
      metavar: 'DIR',
      description:
        'where report.md, report.html and the charts go (default: the --run folder, else the current folder)',
    },
    {
      name: 'examples',
      type: 'number',
      metavar: 'N',
      default: 5,
      description: 'example questions shown per kind of change (wrong -> right, right -> wrong)',
    },
    { name: 'note', type: 'string', metavar: 'TEXT', description: 'a paragraph shown at the top of the report' },
  ],
  details: [
    'report.html is one file with everything inline (CSS, SVG charts; no script): open it anywhere, mail it.',
    'report.md links the charts it writes beside it (loss.svg, lr.svg, mmlu.svg with --mmlu).',
    'Results files with per-example results for different questions are compared on the questions both have.',
    'Example:',
    '  sqlora report --run runs/train --baseline runs/baseline/results.json --finetuned runs/eval/results.json --out runs/report',
  ].join('\n'),
  run(args) {
    const runDir = args.string('run');
    const baselinePath = args.string('baseline');
    const finetunedPath = args.string('finetuned');
    const mmluPath = args.string('mmlu');
    if (runDir === undefined && baselinePath === undefined && finetunedPath === undefined && mmluPath === undefined) {
      throw new UserError(
        'sqlora report: give --run DIR and/or --baseline FILE / --finetuned FILE / --mmlu FILE (see sqlora report --help)',
      );
    }
    const written = writeReport(args.string('out') ?? runDir ?? '.', {
      run: runDir !== undefined ? readTrainingRun(runDir) : null,
      baseline: baselinePath !== undefined ? readResults(baselinePath, 'baseline') : null,
      finetuned: finetunedPath !== undefined ? readResults(finetunedPath, 'fine-tuned') : null,
      mmlu: mmluPath !== undefined ? readMmluResults(mmluPath) : null,
      note: args.string('note'),
      examples: positiveInt('report', 'examples', args.number('examples'), true),
      generatedAt: new Date(),
    });
    process.stdout.write(
      `wrote ${written.html} and ${written.markdown}${written.charts.length ? ` (+ ${written.charts.length} charts)` : ''}\n`,
    );
  },
};
