export declare const cliBundleDir: string;
export declare function bundleCli(): Promise<void>;
