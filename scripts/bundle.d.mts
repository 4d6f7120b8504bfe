export declare const root: string;
export interface Metafile {
  inputs: Record<string, unknown>;
  outputs: Record<string, { inputs: Record<string, unknown> }>;
}
export declare function bundle(entry: string, outfile: string): Promise<Metafile>;
export declare function pluginEntries(): Promise<{ entry: string; outfile: string }[]>;
