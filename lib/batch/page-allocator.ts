/** Free list of KV cache pages. Pages are plain indices into the native pool. */
export class PageAllocator {
  private readonly freeList: number[];

  constructor(readonly numPages: number) {
    this.freeList = Array.from({ length: numPages }, (_, i) => numPages - 1 - i);
  }

  get free(): number {
    return this.freeList.length;
  }

  /** n pages, or undefined (and nothing taken) when fewer are free. */
  alloc(n: number): number[] | undefined {
    if (n > this.freeList.length) return undefined;
    return this.freeList.splice(this.freeList.length - n, n).reverse();
  }

  release(pages: readonly number[]): void {
    for (let i = pages.length - 1; i >= 0; i--) this.freeList.push(pages[i]);
  }
}
