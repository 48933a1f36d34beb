export * from './errors';
export * from './ip';
export * from './log';
export * from './clock';
