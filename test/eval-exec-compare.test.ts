import { describe, expect, it } from 'vitest';
import { prepareForExecution, removeDistinct, resultsEquivalent } from '../src/eval/execution.js';

// Rows as the sandbox returns them: value keys ('I' integer, 'R' real, 'S' text, 'N' null).
const I = (n: number) => 'I' + n;
const S = (s: string) => 'S' + s;

describe('resultsEquivalent (official result_eq semantics)', () => {
  it('accepts the same rows with columns in another order', () => {
    const gold = [
      [S('Joe'), I(52)],
      [S('Tim'), I(32)],
    ];
    const pred = [
      [I(52), S('Joe')],
      [I(32), S('Tim')],
    ];
    expect(resultsEquivalent(gold, pred, false)).toBe(true);
    expect(resultsEquivalent(gold, pred, true)).toBe(true);
  });

  it('ignores row order unless the gold query orders', () => {
    const gold = [[S('a')], [S('b')]];
    const pred = [[S('b')], [S('a')]];
    expect(resultsEquivalent(gold, pred, false)).toBe(true);
    expect(resultsEquivalent(gold, pred, true)).toBe(false);
  });

  it('compares bags, not sets: duplicates count', () => {
    expect(resultsEquivalent([[S('a')], [S('a')], [S('b')]], [[S('a')], [S('b')], [S('b')]], false)).toBe(false);
    expect(resultsEquivalent([[S('a')], [S('a')]], [[S('a')]], false)).toBe(false);
  });

  it('requires the same number of columns', () => {
    expect(resultsEquivalent([[S('a'), S('a')]], [[S('a')]], false)).toBe(false);
  });

  it('treats two empty results as equal and an empty one as different from a non-empty one', () => {
    expect(resultsEquivalent([], [], true)).toBe(true);
    expect(resultsEquivalent([], [[I(1)]], false)).toBe(false);
    expect(resultsEquivalent([[I(1)]], [], false)).toBe(false);
  });

  it('needs one column permutation for all rows, not one per row', () => {
    // Each predicted row is a permutation of its gold row, but no single column order fits both.
    const gold = [
      [I(1), I(2)],
      [I(3), I(4)],
    ];
    const pred = [
      [I(1), I(2)],
      [I(4), I(3)],
    ];
    expect(resultsEquivalent(gold, pred, false)).toBe(false);
  });

  it('searches permutations of many columns, including identical ones', () => {
    const gold = [
      [I(1), I(2), I(3), I(4), I(5)],
      [I(6), I(7), I(8), I(9), I(10)],
    ];
    const pred = [
      [I(5), I(3), I(1), I(4), I(2)],
      [I(10), I(8), I(6), I(9), I(7)],
    ];
    expect(resultsEquivalent(gold, pred, true)).toBe(true);
    const nulls = Array.from({ length: 3 }, () => Array.from({ length: 12 }, () => 'N'));
    expect(
      resultsEquivalent(
        nulls,
        nulls.map((r) => [...r]),
        false,
      ),
    ).toBe(true);
  });

  it('distinguishes types as Python does: text "1" is not the integer 1', () => {
    expect(resultsEquivalent([[S('1')]], [[I(1)]], false)).toBe(false);
  });
});

describe('query rewrites before execution (official postprocess, remove_distinct, replace_cur_year)', () => {
  it('drops DISTINCT as a word only', () => {
    expect(removeDistinct('SELECT DISTINCT name FROM t')).toBe('SELECT  name FROM t');
    // Only the first statement survives, as with the official script's sqlparse rebuild.
    expect(removeDistinct('SELECT name FROM t; DROP TABLE t')).toBe('SELECT name FROM t;');
    expect(removeDistinct("SELECT 'a;b' FROM t; '")).toBe("SELECT 'a;b' FROM t;");
    expect(removeDistinct('SELECT 1 -- x; y\nFROM t')).toBe('SELECT 1 -- x; y\nFROM t');
    expect(removeDistinct('SELECT count(distinct x) FROM t')).toBe('SELECT count( x) FROM t');
    expect(removeDistinct('SELECT distinct_x FROM t WHERE a = \'distinct\' AND "distinct" = 1 -- distinct')).toBe(
      'SELECT distinct_x FROM t WHERE a = \'distinct\' AND "distinct" = 1 -- distinct',
    );
  });

  it('closes spaced operators and replaces YEAR(CURDATE())', () => {
    expect(prepareForExecution('SELECT a FROM t WHERE b > = 2 AND c ! = 3', true)).toBe(
      'SELECT a FROM t WHERE b >= 2 AND c != 3',
    );
    expect(prepareForExecution('SELECT YEAR ( CURDATE ( ) ) - age FROM t', true)).toBe('SELECT 2020- age FROM t');
    expect(prepareForExecution('SELECT DISTINCT a FROM t', true)).toBe('SELECT DISTINCT a FROM t');
  });
});
