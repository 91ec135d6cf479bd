/**
 * Hand-written pairs on the test-fixture databases, each aimed at one rule of the official
 * evaluator (what it ignores, what it rejects, where it is quirky). Their expected decisions
 * are not written here: the harness has the official script decide them, and they all go
 * into the unit-test fixture.
 */

export interface EdgeCase {
  db_id: string;
  gold: string;
  pred: string;
  /** The rule the pair exercises. */
  note: string;
}

const count = 'SELECT count(*) FROM singer';
const ordered = 'SELECT name ,  country ,  age FROM singer ORDER BY age DESC';
const france = "SELECT avg(age) ,  min(age) ,  max(age) FROM singer WHERE country  =  'France'";
const nested = 'SELECT song_name FROM singer WHERE age  >  (SELECT avg(age) FROM singer)';
const grouped =
  'SELECT T2.name ,  count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id  =  T2.stadium_id GROUP BY T1.stadium_id';
const intersect = 'SELECT country FROM singer WHERE age  >  40 INTERSECT SELECT country FROM singer WHERE age  <  30';
const joined = 'SELECT count(*) FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid  =  T2.stuid WHERE T1.age  >  20';
const having =
  'SELECT T1.stuid FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid  =  T2.stuid GROUP BY T1.stuid HAVING count(*)  >  1';
const cars = 'SELECT count(*) FROM CARS_DATA WHERE horsepower  >  150';

export const EDGE_CASES: EdgeCase[] = [
  {
    db_id: 'concert_singer',
    gold: count,
    pred: 'select count(*) from singer s',
    note: 'table alias without AS is rejected',
  },
  {
    db_id: 'concert_singer',
    gold: count,
    pred: 'SELECT count(*) FROM singer AS singer',
    note: 'alias equal to a table name is rejected',
  },
  {
    db_id: 'concert_singer',
    gold: count,
    pred: 'SELECT count(singer_id) FROM singer',
    note: 'count(col) differs from count(*)',
  },
  {
    db_id: 'concert_singer',
    gold: `${ordered} LIMIT 1`,
    pred: 'SELECT name, country, age FROM singer ORDER BY age DESC LIMIT',
    note: 'LIMIT without a count is rejected',
  },
  {
    db_id: 'concert_singer',
    gold: `${ordered} LIMIT 1`,
    pred: 'SELECT name, country, age FROM singer ORDER BY age DESC LIMIT all',
    note: 'the LIMIT count is never read',
  },
  {
    db_id: 'concert_singer',
    gold: count,
    pred: 'SELECT count(*) FROM singer LIMIT 5',
    note: 'an added LIMIT is a keyword difference',
  },
  {
    db_id: 'concert_singer',
    gold: count,
    pred: 'SELECT count(*) FROM singer;;;',
    note: 'trailing semicolons are skipped',
  },
  { db_id: 'concert_singer', gold: count, pred: '(SELECT count(*) FROM singer)', note: 'a parenthesized query' },
  {
    db_id: 'concert_singer',
    gold: count,
    pred: 'SELECT count(*) FROM `singer`',
    note: 'backticks split into tokens of their own',
  },
  {
    db_id: 'concert_singer',
    gold: 'SELECT T2.name FROM concert AS T1 JOIN stadium AS T2',
    pred: 'SELECT T2.name FROM concert AS T1, stadium AS T2',
    note: 'comma joins are rejected',
  },
  { db_id: 'concert_singer', gold: count, pred: '', note: 'empty prediction' },
  {
    db_id: 'concert_singer',
    gold: ordered,
    pred: 'SELECT age, name, country FROM singer ORDER BY age DESC',
    note: 'select list compared as a set',
  },
  {
    db_id: 'concert_singer',
    gold: ordered,
    pred: 'SELECT name, country, age FROM singer ORDER BY age',
    note: 'order direction matters',
  },
  {
    db_id: 'concert_singer',
    gold: ordered,
    pred: 'SELECT DISTINCT name, country, age FROM singer ORDER BY age DESC',
    note: 'DISTINCT is ignored',
  },
  {
    db_id: 'concert_singer',
    gold: ordered,
    pred: 'SELECT name, country, age FROM singer ORDER BY age DESC LIMIT 3',
    note: 'LIMIT presence matters',
  },
  {
    db_id: 'concert_singer',
    gold: ordered,
    pred: 'SELECT name, country, age FROM singer ORDER BY age DESC junk words',
    note: 'tokens after a complete ORDER BY are ignored',
  },
  {
    db_id: 'concert_singer',
    gold: 'SELECT name FROM singer ORDER BY age ,  name DESC',
    pred: 'SELECT name FROM singer ORDER BY age DESC, name DESC',
    note: 'only the last direction given is kept',
  },
  {
    db_id: 'concert_singer',
    gold: ordered,
    pred: 'SELECT singer.name, singer.country, singer.age FROM singer ORDER BY singer.age DESC',
    note: 'table-qualified columns',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'Germany'",
    note: 'values are ignored',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: 'SELECT avg(age), min(age), max(age) FROM singer WHERE country = "France"',
    note: 'double-quoted value',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country != 'France'",
    note: 'operator matters',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country IN ('France', 'Spain')",
    note: 'IN lists of several values are rejected',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country IN ('France')",
    note: 'IN with one value parses (as a different operator)',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country='France'",
    note: 'no space before a quoted value glues tokens',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country LIKE 'France'",
    note: 'LIKE is a different operator',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: 'SELECT avg(age), min(age), max(age) FROM singer WHERE country = value',
    note: '"value" is replaced by 1 in predictions',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), max(age), min(age) FROM singer WHERE NOT country = 'France'",
    note: 'NOT before a condition',
  },
  {
    db_id: 'concert_singer',
    gold: france,
    pred: "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'it''s'",
    note: 'doubled quote inside a string',
  },
  {
    db_id: 'concert_singer',
    gold: nested,
    pred: 'SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer WHERE age > 3)',
    note: 'a condition subquery is compared whole',
  },
  {
    db_id: 'concert_singer',
    gold: nested,
    pred: 'SELECT song_name FROM singer WHERE age > (SELECT max(age) FROM singer)',
    note: 'subquery aggregate matters',
  },
  {
    db_id: 'concert_singer',
    gold: nested,
    pred: 'SELECT song_name FROM singer WHERE age>(SELECT avg(age) FROM singer)',
    note: 'no spaces around >',
  },
  {
    db_id: 'concert_singer',
    gold: nested,
    pred: 'SELECT song_name FROM singer WHERE age >= (SELECT avg(age) FROM singer)',
    note: '>= is one operator',
  },
  {
    db_id: 'concert_singer',
    gold: nested,
    pred: 'SELECT song_name FROM singer WHERE age >=(SELECT avg(age) FROM singer)',
    note: '>= before a parenthesis',
  },
  {
    db_id: 'concert_singer',
    gold: grouped,
    pred: 'SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id GROUP BY T2.stadium_id',
    note: 'GROUP BY compares column names only',
  },
  {
    db_id: 'concert_singer',
    gold: grouped,
    pred: 'SELECT T2.name, count(*) FROM stadium AS T2 JOIN concert AS T1 ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id',
    note: 'join order is a set',
  },
  {
    db_id: 'concert_singer',
    gold: grouped,
    pred: 'SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 GROUP BY T1.stadium_id',
    note: 'join conditions are not compared',
  },
  {
    db_id: 'concert_singer',
    gold: grouped,
    pred: 'SELECT T2.name, count(*) FROM concert AS T1 INNER JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id',
    note: 'INNER JOIN is rejected',
  },
  {
    db_id: 'concert_singer',
    gold: intersect,
    pred: 'SELECT country FROM singer WHERE age > 40 EXCEPT SELECT country FROM singer WHERE age < 30',
    note: 'set operation kind matters',
  },
  {
    db_id: 'concert_singer',
    gold: intersect,
    pred: 'SELECT country FROM singer WHERE age < 30 INTERSECT SELECT country FROM singer WHERE age > 40',
    note: 'set operation sides are ordered',
  },
  {
    db_id: 'concert_singer',
    gold: intersect,
    pred: 'SELECT country FROM singer WHERE age > 40 AND age < 30',
    note: 'INTERSECT vs AND',
  },
  {
    db_id: 'pets_1',
    gold: joined,
    pred: 'SELECT count(*) FROM has_pet AS T2 JOIN student AS T1 ON T2.stuid = T1.stuid WHERE T1.age > 20',
    note: 'reversed join',
  },
  {
    db_id: 'pets_1',
    gold: having,
    pred: 'SELECT T2.stuid FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid GROUP BY T2.stuid HAVING count(*) > 1',
    note: 'foreign-key columns are unified',
  },
  {
    db_id: 'pets_1',
    gold: having,
    pred: 'SELECT T1.stuid FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid GROUP BY T1.stuid HAVING count(*) > 5',
    note: 'HAVING values are ignored',
  },
  {
    db_id: 'pets_1',
    gold: having,
    pred: 'SELECT T1.stuid FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid GROUP BY T1.stuid HAVING count(*) > 1 AND count(*) < 9',
    note: 'an extra HAVING condition',
  },
  {
    db_id: 'pets_1',
    gold: having,
    pred: 'SELECT stuid FROM has_pet GROUP BY stuid HAVING count(*) > 1',
    note: 'FROM tables differ',
  },
  {
    db_id: 'pets_1',
    gold: joined,
    pred: 'SELECT count(*) FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid WHERE T1.age > 20 OR T1.age < 5',
    note: 'OR is a keyword of its own',
  },
  {
    db_id: 'pets_1',
    gold: joined,
    pred: 'SELECT count(*) FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid WHERE T1.age BETWEEN 20 AND 30',
    note: 'BETWEEN',
  },
  {
    db_id: 'pets_1',
    gold: joined,
    pred: 'SELECT count(*) FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid WHERE T1.age > 20 T1.age < 30',
    note: 'two conditions without AND',
  },
  {
    db_id: 'car_1',
    gold: cars,
    pred: 'SELECT count(*) FROM cars_data WHERE horsepower > value',
    note: '"value" placeholder',
  },
  {
    db_id: 'car_1',
    gold: cars,
    pred: 'SELECT count(*) FROM cars_data WHERE horsepower > 1e2',
    note: 'a float literal',
  },
  {
    db_id: 'car_1',
    gold: cars,
    pred: 'SELECT count(*) FROM cars_data WHERE horsepower > mpg',
    note: 'a column as the value (values ignored)',
  },
  {
    db_id: 'car_1',
    gold: cars,
    pred: 'SELECT count(*) FROM (SELECT * FROM cars_data WHERE horsepower > 150)',
    note: 'FROM subquery',
  },
  {
    db_id: 'car_1',
    gold: cars,
    pred: 'SELECT count(*) FROM cars_data AS a JOIN cars_data AS b ON a.id = b.id WHERE a.horsepower > 150',
    note: 'self join',
  },
  {
    db_id: 'car_1',
    gold: cars,
    pred: 'SELECT count(*) FROM cars_data WHERE horsepower + 1 > 150',
    note: 'arithmetic with a number is rejected',
  },
];
