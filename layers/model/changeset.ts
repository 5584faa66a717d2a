// A change set: what one step changed in a root filesystem, as layers/ commits it.
// Produced by unionfs/ (overlay upperdir diff, or the userspace manifest diff); consumed by tarFromChanges().

/** Change is one path that a step added, modified or deleted. Paths are relative, '/'-separated, no leading '/' or './'. */
export interface Change {
  path: string;
  kind: 'add' | 'modify' | 'delete';
  /**
   * For an added or modified directory: everything the lower layers had below it is hidden
   * (a `.wh..wh..opq` entry). Its new children are listed as changes of their own.
   */
  opaque?: boolean;
  /**
   * Whether the path was a directory when the change set was made (the overlay diff knows it): the tar writer then
   * orders the entry without looking it up again, and still refuses the entry when the tree says otherwise.
   */
  dir?: boolean;
}

/** sortChanges orders changes the way layer tars list entries: by path, bytewise. */
export function sortChanges(changes: Change[]): Change[] {
  return [...changes].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
