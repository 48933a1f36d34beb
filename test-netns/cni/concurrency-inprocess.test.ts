import t from 'tap';
import { concurrencyTest } from './concurrency';

// 200 pods x (ADD + DEL) through real processes: more than tap's default 120 s per file.
t.setTimeout(900_000);
concurrencyTest('inprocess');
