// Tasks run one after another per key. PUT /routing swaps the live table and then writes
// routing.json; two PUTs of one model running interleaved could swap in the order they came but
// land their files the other way round, leaving an older table in the file for the next poll to
// swap back in. Run one at a time, the live table, routing.json and the last acknowledged PUT
// agree once they return.
export class SerialQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
