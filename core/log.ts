/**
 * One-line structured logs for processes we own (CLI, workers, services). Inside
 * workflows and activities use the SDK loggers instead.
 */
export type Logger = (message: string, attrs?: Record<string, unknown>) => void;

export function createLogger(component: string, write: (line: string) => void = (l) => console.log(l)): Logger {
  return (message, attrs) => {
    const time = new Date().toISOString().slice(11, 23);
    write(`${time} [${component}] ${message}${attrs && Object.keys(attrs).length ? ` ${JSON.stringify(attrs)}` : ''}`);
  };
}
