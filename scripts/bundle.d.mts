export declare const root: string;
export interface Metafile {
  inputs: Record<string, unknown>;
  outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }>;
}
export declare function bundle(entry: string, outfile: string): Promise<Metafile>;
export declare function buildSnapshot(
  name: string,
  options: { entryPoints: string[] } | { stdin: { contents: string; resolveDir: string; sourcefile: string; loader: 'ts' | 'js' } },
  blob: string,
): Promise<boolean>;
export declare function snapshot(entry: string, outfile: string): Promise<void>;
export declare function pluginEntries(): Promise<{ entry: string; outfile: string; snapshot?: boolean }[]>;
export declare function buildPlugins(): Promise<void>;
